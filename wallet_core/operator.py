"""The operator's side of the wallet: sessions, players, cashier adjustments, snapshots.

The HTTP operator API of the server and replay's bootstrap both call this; every
action is one store transaction with its own audit row, so the chain covers
opening balances and sessions as well as callbacks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from .codes import Code
from .config import WalletConfig
from .money import INT64_MAX, MoneyError
from .store.base import AuditEntry, LedgerEntry, SessionRow, Store, StoreTx

__all__ = ["OperatorApi", "OperatorResult"]


@dataclass(frozen=True, slots=True)
class OperatorResult:
    code: Code
    message: str = ""
    balance: int | None = None

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


class OperatorApi:
    def __init__(self, store: Store, config: WalletConfig) -> None:
        self.store = store
        self.config = config

    def open_session(
        self, session_id: str, player_id: str, currency: str, aggregator: str, now_us: int
    ) -> OperatorResult:
        """Open a session; opening the same session again with the same owner is a no-op."""
        if aggregator not in self.config.aggregators:
            return OperatorResult(Code.BAD_REQUEST, f"unknown aggregator {aggregator!r}")
        if currency not in self.config.currencies:
            return OperatorResult(Code.BAD_REQUEST, f"unknown currency {currency!r}")
        with self.store.transaction() as tx:
            found = tx.get_session(session_id)
            if found is not None:
                same = (found.player_id, found.currency, found.aggregator) == (
                    player_id,
                    currency,
                    aggregator,
                )
                if not same:
                    return OperatorResult(Code.BAD_REQUEST, "the session exists with another owner")
                return OperatorResult(Code.OK, "already open")
            tx.put_session(
                SessionRow(session_id, aggregator, player_id, currency, now_us, now_us), new=True
            )
            _audit(
                tx,
                now_us,
                "session_open",
                {
                    "session_id": session_id,
                    "player_id": player_id,
                    "currency": currency,
                    "aggregator": aggregator,
                },
                player_id,
                currency,
                None,
                None,
            )
        return OperatorResult(Code.OK)

    def close_session(self, session_id: str, now_us: int) -> OperatorResult:
        with self.store.transaction() as tx:
            found = tx.get_session(session_id)
            if found is None:
                return OperatorResult(Code.SESSION_NOT_FOUND, "unknown session")
            if found.closed_us is None:
                found.closed_us = now_us
                tx.put_session(found, new=False)
                _audit(
                    tx,
                    now_us,
                    "session_close",
                    {"session_id": session_id},
                    found.player_id,
                    found.currency,
                    None,
                    None,
                )
        return OperatorResult(Code.OK)

    def set_blocked(self, player_id: str, blocked: bool, now_us: int) -> OperatorResult:
        with self.store.transaction() as tx:
            tx.set_player_blocked(player_id, blocked)
            _audit(
                tx,
                now_us,
                "player_block",
                {"player_id": player_id, "blocked": blocked},
                player_id,
                None,
                None,
                None,
            )
        return OperatorResult(Code.OK)

    def adjust(
        self, reference: str, player_id: str, currency: str, amount_minor: int, now_us: int
    ) -> OperatorResult:
        """A cashier movement (deposit > 0, withdrawal < 0), idempotent on ``reference``."""
        if currency not in self.config.currencies:
            return OperatorResult(Code.BAD_REQUEST, f"unknown currency {currency!r}")
        if not reference or not player_id:
            return OperatorResult(Code.BAD_REQUEST, "reference and player_id are required")
        with self.store.transaction() as tx:
            done = tx.adjustment_done(reference)
            if done is not None:
                return OperatorResult(Code.OK, "already recorded", done)
            current = tx.get_balance(player_id, currency) or 0
            if current + amount_minor > INT64_MAX:
                return OperatorResult(Code.BAD_REQUEST, "the balance would exceed 64 bits", current)
            after = current
            if amount_minor != 0:
                moved = tx.move(player_id, currency, amount_minor)
                if moved is None:
                    return OperatorResult(
                        Code.INSUFFICIENT_FUNDS, "the withdrawal exceeds the balance", current
                    )
                after = moved
                tx.add_ledger(
                    LedgerEntry(
                        now_us,
                        "",
                        reference,
                        "adjustment",
                        player_id,
                        currency,
                        amount_minor,
                        after,
                    )
                )
            tx.record_adjustment(reference, after)
            _audit(
                tx,
                now_us,
                "adjustment",
                {
                    "reference": reference,
                    "player_id": player_id,
                    "currency": currency,
                    "amount_minor": amount_minor,
                },
                player_id,
                currency,
                amount_minor,
                after,
            )
        return OperatorResult(Code.OK, "", after)

    def balance(self, player_id: str, currency: str) -> int:
        with self.store.transaction() as tx:
            return tx.get_balance(player_id, currency) or 0

    def import_snapshot(
        self, rows: Iterable[tuple[str, str, int]], now_us: int, *, label: str = "snapshot"
    ) -> int:
        """Record opening balances as adjustments, once per (player, currency); returns count."""
        count = 0
        for player_id, currency, minor in rows:
            result = self.adjust(
                f"{label}:{player_id}:{currency}", player_id, currency, minor, now_us
            )
            if not result.ok:
                raise MoneyError(f"snapshot {player_id}/{currency}: {result.message}")
            count += 1
        return count


def _audit(
    tx: StoreTx,
    now_us: int,
    kind: str,
    request: dict[str, object],
    player_id: str | None,
    currency: str | None,
    amount: int | None,
    balance: int | None,
) -> None:
    tx.chain_audit(
        AuditEntry(
            now_us,
            "",
            kind,
            "{}",
            json.dumps(request, sort_keys=True).encode(),
            json.dumps({"outcome": "APPLIED", "code": "OK"}),
            b"",
            player_id,
            currency,
            amount,
            balance,
        )
    )
