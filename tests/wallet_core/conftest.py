"""A live-mode wallet on SQLite with two funded players, for engine tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wallet_core import Mode, OperatorApi, Result, WalletConfig, WalletCore
from wallet_core.store import SqliteStore
from wallet_core.testing import CallbackFactory

T0 = 1_790_000_000 * 1_000_000


@dataclass
class Wallet:
    store: SqliteStore
    core: WalletCore
    operator: OperatorApi
    factory: CallbackFactory
    now: int = T0

    def send(self, event: str, aggregator: str = "default", **fields: Any) -> Result:
        headers, body = self.factory.make(event, **fields)
        return self.raw(body, headers, aggregator)

    def raw(
        self, body: bytes, headers: dict[str, str] | None = None, aggregator: str = "default"
    ) -> Result:
        self.now += 1_000_000
        if headers is None:
            headers = self.factory.sign(body)
        return self.core.handle(aggregator, headers, body, self.now)

    def balance(self, player: str = "p1", currency: str = "EUR") -> int:
        return self.store.balances().get((player, currency), 0)

    def counts(self) -> tuple[int, int, int, int]:
        """Rows of ledger, txns, rounds and the sum of balances: what a callback may change."""
        ((ledger,),) = self.store.execute("SELECT count(*) FROM ledger")
        ((txns,),) = self.store.execute("SELECT count(*) FROM txns")
        ((rounds,),) = self.store.execute("SELECT count(*) FROM rounds")
        return int(ledger), int(txns), int(rounds), sum(self.store.balances().values())  # type: ignore[arg-type]


def make_wallet(path: Path, mode: Mode = Mode.LIVE, **config: Any) -> Wallet:
    store = SqliteStore(path)
    cfg = WalletConfig.single(**config)
    wallet = Wallet(
        store,
        WalletCore(store, cfg, mode=mode),
        OperatorApi(store, cfg),
        CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"}),
    )
    wallet.operator.adjust("open-p1", "p1", "EUR", 10_000, T0)
    wallet.operator.adjust("open-p2", "p2", "EUR", 500, T0)
    wallet.operator.open_session("s1", "p1", "EUR", "default", T0)
    wallet.operator.open_session("s2", "p2", "EUR", "default", T0)
    return wallet


@pytest.fixture
def wallet(tmp_path: Path) -> Iterator[Wallet]:
    w = make_wallet(tmp_path / "wallet.db")
    yield w
    w.store.close()


@pytest.fixture
def shadow_wallet(tmp_path: Path) -> Iterator[Wallet]:
    w = make_wallet(tmp_path / "shadow.db", mode=Mode.SHADOW)
    yield w
    w.store.close()
