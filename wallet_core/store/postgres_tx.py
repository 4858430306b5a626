"""The operations of one PostgreSQL transaction (the :class:`~.base.StoreTx` protocol).

Kept apart from :mod:`.postgres` (pool, schema, whole-store reads) so each module
holds one concept.  Why each statement is shaped as it is, see the docstring of
:mod:`.postgres`; in short: advisory locks on keys that may not exist yet, a
conditional debit, ``FOR UPDATE`` on rounds, monotonic session updates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from .base import AuditEntry, LedgerEntry, RoundRow, SessionRow, TxnRow
from .rows import (
    POSTGRES,
    ledger_values,
    round_from,
    round_values,
    session_from,
    session_values,
    txn_from,
    txn_values,
)

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = ["PostgresTx"]

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _key(*parts: str) -> str:
    # NUL never occurs in ids (the dialect refuses it), so the join cannot be ambiguous.
    return "\x01".join(parts)


class PostgresTx:
    """One transaction on one pooled connection; lives only inside ``store.transaction()``."""

    def __init__(self, conn: psycopg.Connection[Any], store: PostgresStore) -> None:
        self.conn = conn
        self._store = store
        self._x = conn.execute

    def _lock(self, *parts: str) -> None:
        self._x(_LOCK, (_key(*parts),))

    def claim_txn(self, aggregator: str, transaction_id: str) -> TxnRow | None:
        # Lock first, read in a second statement: its snapshot is taken after the wait.
        self._lock("txn", aggregator, transaction_id)
        row = self._x(POSTGRES.txn_select, (aggregator, transaction_id)).fetchone()
        return None if row is None else txn_from(aggregator, transaction_id, row)

    def put_txn(self, row: TxnRow, *, new: bool) -> None:
        self._x(POSTGRES.txn_insert if new else POSTGRES.txn_update, txn_values(row))

    def _session_row(self, session_id: str) -> SessionRow | None:
        row = self._x(POSTGRES.session_select, (session_id,)).fetchone()
        return None if row is None else session_from(session_id, row)

    def get_session(self, session_id: str) -> SessionRow | None:
        found = self._session_row(session_id)
        if found is None:
            # The caller may create it: hold its key so a concurrent first callback waits.
            self._lock("session", session_id)
            found = self._session_row(session_id)
        return found

    def put_session(self, row: SessionRow, *, new: bool) -> None:
        if new:
            self._x(POSTGRES.session_insert, session_values(row))
        else:
            # Unlocked read, so only move forward: a concurrent close is never undone.
            self._x(
                "UPDATE sessions SET last_seen_us = GREATEST(last_seen_us, %s),"
                " closed_us = COALESCE(closed_us, %s) WHERE session_id = %s",
                (row.last_seen_us, row.closed_us, row.session_id),
            )

    def player_blocked(self, player_id: str) -> bool:
        row = self._x("SELECT blocked FROM players WHERE player_id = %s", (player_id,)).fetchone()
        return bool(row and row[0])

    def set_player_blocked(self, player_id: str, blocked: bool) -> None:
        self._x(
            "INSERT INTO players (player_id, blocked) VALUES (%s, %s)"
            " ON CONFLICT (player_id) DO UPDATE SET blocked = excluded.blocked",
            (player_id, blocked),
        )

    def get_balance(self, player_id: str, currency: str) -> int | None:
        row = self._x(
            "SELECT balance FROM accounts WHERE player_id = %s AND currency = %s",
            (player_id, currency),
        ).fetchone()
        return None if row is None else int(row[0])

    def move(self, player_id: str, currency: str, delta: int) -> int | None:
        if delta >= 0:
            # A credit cannot fail the CHECK; the upsert also settles two first credits racing.
            row = self._x(
                "INSERT INTO accounts (player_id, currency, balance) VALUES (%s, %s, %s)"
                " ON CONFLICT (player_id, currency)"
                " DO UPDATE SET balance = accounts.balance + excluded.balance RETURNING balance",
                (player_id, currency, delta),
            ).fetchone()
            assert row is not None
            return int(row[0])
        row = self._x(
            "UPDATE accounts SET balance = balance + %s"
            " WHERE player_id = %s AND currency = %s AND balance + %s >= 0 RETURNING balance",
            (delta, player_id, currency, delta),
        ).fetchone()
        return None if row is None else int(row[0])

    def _round_row(self, aggregator: str, round_id: str) -> RoundRow | None:
        row = self._x(POSTGRES.round_select + " FOR UPDATE", (aggregator, round_id)).fetchone()
        return None if row is None else round_from(aggregator, round_id, row)

    def get_round(self, aggregator: str, round_id: str) -> RoundRow | None:
        found = self._round_row(aggregator, round_id)
        if found is None:
            self._lock("round", aggregator, round_id)
            found = self._round_row(aggregator, round_id)
        return found

    def put_round(self, row: RoundRow, *, new: bool) -> None:
        self._x(POSTGRES.round_insert if new else POSTGRES.round_update, round_values(row))

    def add_ledger(self, entry: LedgerEntry) -> None:
        self._x(POSTGRES.ledger_insert, ledger_values(entry))

    def append_audit(self, entry: AuditEntry) -> int:
        return self._store.chain(self.conn, entry)

    def adjustment_done(self, reference: str) -> int | None:
        # Held to commit: a concurrent adjustment with this reference waits, then sees ours.
        self._lock("adjustment", reference)
        row = self._x(
            "SELECT balance_after FROM adjustments WHERE reference = %s", (reference,)
        ).fetchone()
        return None if row is None else int(row[0])

    def record_adjustment(self, reference: str, balance_after: int) -> None:
        self._x(
            "INSERT INTO adjustments (reference, balance_after) VALUES (%s, %s)",
            (reference, balance_after),
        )
