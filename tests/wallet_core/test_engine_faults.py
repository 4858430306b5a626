"""A fault between any two writes of a callback leaves nothing behind (must show 3).

The store's transaction object is wrapped so that the k-th write raises; for
every k along the write path of each event, the wallet must be exactly as
before, answer RETRY_LATER, and the retry must apply exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from wallet_core import Mode, WalletConfig, WalletCore
from wallet_core.store import SqliteStore

from .conftest import Wallet, make_wallet

WRITES = {
    "put_txn",
    "put_session",
    "move",
    "put_round",
    "add_ledger",
    "append_audit",
    "chain_audit",
    "set_player_blocked",
    "record_adjustment",
}


class Injected(RuntimeError):
    pass


class _FaultyTx:
    def __init__(self, inner: Any, fail_at: int, seen: list[str]) -> None:
        self._inner, self._fail_at, self._seen = inner, fail_at, seen

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name not in WRITES:
            return target

        def write(*args: Any, **kwargs: Any) -> Any:
            if len(self._seen) == self._fail_at:
                raise Injected(f"fault before write {name}")
            self._seen.append(name)
            return target(*args, **kwargs)

        return write


class FaultyStore(SqliteStore):
    """Raises before the ``fail_at``-th write (0-based) of the next transaction."""

    fail_at: int | None = None
    seen: list[str]

    @contextmanager
    def transaction(self) -> Iterator[Any]:  # type: ignore[override]
        with super().transaction() as tx:
            if self.fail_at is None:
                yield tx
            else:
                self.seen = []
                yield _FaultyTx(tx, self.fail_at, self.seen)


def snapshot(store: SqliteStore) -> dict[str, list[tuple[object, ...]]]:
    tables = ["accounts", "ledger", "txns", "rounds", "sessions", "audit", "players"]
    return {t: store.execute(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}


SCENARIOS: dict[str, tuple[str, dict[str, str]]] = {
    "bet": ("bet", {"transaction_id": "t1", "amount": "10.00", "round_id": "r1"}),
    "win": ("win", {"transaction_id": "w1", "amount": "7.00", "round_id": "r1"}),
    "refund": (
        "refund",
        {"transaction_id": "f1", "amount": "5.00", "round_id": "r0", "ref_transaction_id": "t0"},
    ),
    "tombstone": (
        "refund",
        {"transaction_id": "f2", "amount": "5.00", "round_id": "r1", "ref_transaction_id": "ghost"},
    ),
    "settle": ("settle", {"transaction_id": "e1", "round_id": "r0"}),
    "balance": ("balance", {}),
}


def _prepared(folder: Path, durability: str = "live") -> tuple[FaultyStore, Wallet]:
    folder.mkdir(parents=True, exist_ok=True)
    wallet = make_wallet(folder / "w.db")
    wallet.send("bet", transaction_id="t0", amount="5.00", round_id="r0")
    wallet.store.close()
    store = FaultyStore(folder / "w.db", durability=durability)  # type: ignore[arg-type]
    wallet.store = store
    wallet.core = WalletCore(store, WalletConfig.single(), mode=Mode.LIVE)
    return store, wallet


def _write_path(folder: Path, event: str, fields: dict[str, str], durability: str) -> list[str]:
    """The writes one successful callback makes, in order."""
    store, wallet = _prepared(folder, durability)
    store.fail_at = 10_000
    wallet.send(event, **fields)
    store.close()
    return list(store.seen)


@pytest.mark.parametrize("durability", ["live", "replay"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_fault_between_any_two_writes_leaves_nothing_and_retry_applies_once(
    tmp_path: Path, scenario: str, durability: str
) -> None:
    """In replay durability the fault hits the write-behind buffer, which must undo it too."""
    event, fields = SCENARIOS[scenario]
    path = _write_path(tmp_path / "count", event, fields, durability)
    assert "chain_audit" in path and len(path) >= 2
    for fail_at in range(len(path)):
        store, wallet = _prepared(tmp_path / f"{fail_at}", durability)
        before = snapshot(store)
        store.fail_at = fail_at
        result = wallet.send(event, **fields)
        assert result.decision.code.value == "RETRY_LATER", (fail_at, path)
        assert result.response.status == 503
        assert snapshot(store) == before, f"writes left behind after a fault before {path[fail_at]}"
        store.fail_at = None
        retried = wallet.send(event, **fields)
        assert retried.decision.code.value == "OK"
        again = wallet.send(event, **fields)
        if event != "balance":
            assert again.decision.outcome.value == "REPEAT"
            assert again.response == retried.response
        movements = store.execute(
            "SELECT count(*) FROM ledger WHERE transaction_id = ?", (fields.get("transaction_id"),)
        )
        expected = 1 if event in ("bet", "win") or scenario == "refund" else 0
        assert movements == [(expected,)]
        assert store.ledger_sums() == store.balances()
        store.close()
