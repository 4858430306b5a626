"""Row layouts shared by every store: one column list and one decoder per table.

SQLite and PostgreSQL differ in placeholders (``?`` and ``%s``) and in a few
statements that need the server's own locking; the columns, the order of values
and the way a fetched row becomes a record are the same, so they live here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from .base import HistoryRow, LedgerEntry, RoundRow, SessionRow, TxnRow

__all__ = [
    "POSTGRES",
    "history_from",
    "SQLITE",
    "Statements",
    "ledger_values",
    "round_from",
    "round_values",
    "session_from",
    "session_values",
    "txn_from",
    "txn_values",
]

_TXN = (
    "event, fingerprint, code, status, body, balance_after, player_id, currency,"
    " amount_minor, round_id, applied, refunded_by"
)
_SESSION = "aggregator, player_id, currency, opened_us, last_seen_us, closed_us"
_ROUND = "player_id, currency, bet_total, win_total, refund_total, settled_us"
_LEDGER = (
    "at_us, aggregator, transaction_id, kind, player_id, currency, amount_minor, balance_after"
)


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def txn_from(aggregator: str, transaction_id: str, row: Sequence[Any]) -> TxnRow:
    return TxnRow(
        aggregator,
        transaction_id,
        row[0],
        _blob(row[1]),
        row[2],
        row[3],
        _blob(row[4]),
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        bool(row[10]),
        row[11],
    )


#: A row's values in the order of :attr:`Statements.txn_insert` and
#: :attr:`Statements.txn_update`.  The ``*_values`` builders are ``attrgetter``s: one C
#: call builds the tuple, which matters when a replay flush writes thousands of rows.
txn_values: Callable[[TxnRow], tuple[Any, ...]] = attrgetter(
    "event",
    "fingerprint",
    "code",
    "status",
    "body",
    "balance_after",
    "player_id",
    "currency",
    "amount_minor",
    "round_id",
    "applied",
    "refunded_by",
    "aggregator",
    "transaction_id",
)


def session_from(session_id: str, row: Sequence[Any]) -> SessionRow:
    return SessionRow(session_id, *row)


#: In the order of :attr:`Statements.session_insert`.
session_values: Callable[[SessionRow], tuple[Any, ...]] = attrgetter(
    "session_id", "aggregator", "player_id", "currency", "opened_us", "last_seen_us", "closed_us"
)


def round_from(aggregator: str, round_id: str, row: Sequence[Any]) -> RoundRow:
    return RoundRow(aggregator, round_id, *row)


#: In the order of :attr:`Statements.round_insert` and :attr:`Statements.round_update`.
round_values: Callable[[RoundRow], tuple[Any, ...]] = attrgetter(
    "player_id",
    "currency",
    "bet_total",
    "win_total",
    "refund_total",
    "settled_us",
    "aggregator",
    "round_id",
)


def history_from(row: Sequence[Any], ref: str | None) -> HistoryRow:
    """A ``txn_history`` row (audit columns joined with txns) plus the bet a refund reversed."""
    return HistoryRow(
        int(row[0]),
        int(row[1]),
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        ref,
        row[12],
    )


def ledger_values(entry: LedgerEntry) -> tuple[Any, ...]:
    return tuple(entry)


def _marks(placeholder: str, count: int) -> str:
    return ",".join([placeholder] * count)


def _sets(columns: str, placeholder: str) -> str:
    return ", ".join(f"{name.strip()}={placeholder}" for name in columns.split(","))


class Statements:
    """The shared statements of one SQL dialect, built once for its placeholder."""

    def __init__(self, placeholder: str) -> None:
        p = placeholder
        self.txn_select = f"SELECT {_TXN} FROM txns WHERE aggregator = {p} AND transaction_id = {p}"
        self.txn_insert = (
            f"INSERT INTO txns ({_TXN}, aggregator, transaction_id) VALUES ({_marks(p, 14)})"
        )
        self.txn_update = (
            f"UPDATE txns SET {_sets(_TXN, p)} WHERE aggregator = {p} AND transaction_id = {p}"
        )
        self.session_select = f"SELECT {_SESSION} FROM sessions WHERE session_id = {p}"
        self.session_insert = (
            f"INSERT INTO sessions (session_id, {_SESSION}) VALUES ({_marks(p, 7)})"
        )
        self.round_select = f"SELECT {_ROUND} FROM rounds WHERE aggregator = {p} AND round_id = {p}"
        self.round_insert = (
            f"INSERT INTO rounds ({_ROUND}, aggregator, round_id) VALUES ({_marks(p, 8)})"
        )
        self.round_update = (
            f"UPDATE rounds SET {_sets(_ROUND, p)} WHERE aggregator = {p} AND round_id = {p}"
        )
        self.ledger_insert = f"INSERT INTO ledger ({_LEDGER}) VALUES ({_marks(p, 8)})"


#: The two dialects the stores speak.
SQLITE = Statements("?")
POSTGRES = Statements("%s")
