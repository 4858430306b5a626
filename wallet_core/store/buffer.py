"""Write-behind state for replay durability: the ledger in memory, flushed in groups.

A replay ledger is a scratch file owned by one process (SQLite's exclusive lock),
so the wallet's working state can live in dictionaries and reach SQLite in
batches (``executemany`` every ``group_size`` callbacks).  Atomicity per callback
is kept with an overlay: a callback's reads see its own writes first, its writes
go to the overlay, and only a callback that finishes merges its overlay into the
shared state and the pending batch.  A callback that fails simply drops its
overlay, exactly as a rolled-back transaction would.

Rows handed to the engine are copies, because the engine mutates rows before
writing them back and a failed callback must not leave a mutated row behind.  Rows
the engine writes are kept as given: by the :class:`~.base.StoreTx` contract a
row is not touched after it was put.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from wallet_core.audit import AUDIT_COLUMNS, GENESIS, audit_values, chain_hash

from .base import AuditEntry, LedgerEntry, RoundRow, SessionRow, TxnRow
from .rows import SQLITE as SQL
from .rows import (
    round_from,
    round_values,
    session_from,
    session_values,
    txn_from,
    txn_values,
)

__all__ = ["BufferedTx", "WriteBuffer"]

_MISSING: Any = object()


def _replace(insert: str) -> str:
    return insert.replace("INSERT INTO", "INSERT OR REPLACE INTO", 1)


_UPSERTS = {
    "accounts": "INSERT OR REPLACE INTO accounts (player_id, currency, balance) VALUES (?,?,?)",
    "sessions": _replace(SQL.session_insert),
    "rounds": _replace(SQL.round_insert),
    "txns": _replace(SQL.txn_insert),
    "players": "INSERT OR REPLACE INTO players (player_id, blocked) VALUES (?,?)",
    "adjustments": "INSERT OR REPLACE INTO adjustments (reference, balance_after) VALUES (?,?)",
}
_TABLES = tuple(_UPSERTS)
_AUDIT_INSERT = f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ({','.join('?' * 14)})"


def _values(table: str, rows: dict[Any, Any]) -> Iterable[tuple[Any, ...]]:
    """The pending ``rows`` of ``table`` as parameters of ``_UPSERTS[table]``."""
    if table == "accounts":
        return [(player, currency, balance) for (player, currency), balance in rows.items()]
    if table == "players":
        return [(key, int(blocked)) for key, blocked in rows.items()]
    if table == "adjustments":
        return rows.items()
    if table == "sessions":
        return map(session_values, rows.values())
    if table == "rounds":
        return map(round_values, rows.values())
    return map(txn_values, rows.values())


class WriteBuffer:
    """Cached state, pending writes, and the audit head of one replay store."""

    def __init__(self, conn: sqlite3.Connection, max_cached: int = 500_000) -> None:
        self.conn = conn
        self.max_cached = max_cached
        self.cache: dict[str, dict[Any, Any]] = {t: {} for t in _TABLES}
        self.pending: dict[str, dict[Any, Any]] = {t: {} for t in _TABLES}
        self.ledger: list[tuple[Any, ...]] = []
        self.audit: list[tuple[Any, ...]] = []
        self.head: tuple[int, bytes] | None = None
        #: Tables whose cache holds every row (they were empty at open and never evicted),
        #: so a miss means "absent" without asking SQLite.
        self.complete = {t for t in _TABLES if self._empty(t)}

    def _empty(self, table: str) -> bool:
        return self.conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None

    def load(self, table: str, key: Any) -> Any:
        """The committed value of ``key`` (None when absent), from cache or SQLite."""
        cached = self.cache[table].get(key, _MISSING)
        if cached is not _MISSING:
            return cached
        if table in self.complete:
            return None
        value = self._query(table, key)
        self.cache[table][key] = value
        return value

    def _query(self, table: str, key: Any) -> Any:
        x = self.conn.execute
        if table == "accounts":
            row = x("SELECT balance FROM accounts WHERE player_id=? AND currency=?", key).fetchone()
            return None if row is None else int(row[0])
        if table == "players":
            row = x("SELECT blocked FROM players WHERE player_id=?", (key,)).fetchone()
            return bool(row and row[0])
        if table == "adjustments":
            row = x("SELECT balance_after FROM adjustments WHERE reference=?", (key,)).fetchone()
            return None if row is None else int(row[0])
        if table == "sessions":
            row = x(SQL.session_select, (key,)).fetchone()
            return None if row is None else session_from(key, row)
        if table == "rounds":
            row = x(SQL.round_select, key).fetchone()
            return None if row is None else round_from(key[0], key[1], row)
        row = x(SQL.txn_select, key).fetchone()
        return None if row is None else txn_from(key[0], key[1], row)

    def audit_head(self) -> tuple[int, bytes]:
        if self.head is None:
            row = self.conn.execute(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            self.head = (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))
        return self.head

    def merge(self, tx: BufferedTx) -> None:
        cache, pending = self.cache, self.pending
        for table, writes in tx.over.items():
            if writes:
                cache[table].update(writes)
                pending[table].update(writes)
        self.ledger.extend(tx.ledger)
        self.audit.extend(tx.audit)
        if tx.head is not None:
            self.head = tx.head

    def flush(self) -> None:
        """Write every pending change in one SQLite transaction (the caller holds the lock)."""
        if not (self.ledger or self.audit or any(self.pending.values())):
            return
        x, many = self.conn.execute, self.conn.executemany
        x("BEGIN IMMEDIATE")
        try:
            for table in _TABLES:
                rows = self.pending[table]
                if rows:
                    many(_UPSERTS[table], _values(table, rows))
            if self.ledger:
                many(SQL.ledger_insert, self.ledger)
            if self.audit:
                many(_AUDIT_INSERT, self.audit)
            x("COMMIT")
        except BaseException:
            x("ROLLBACK")
            self.forget()
            raise
        for rows in self.pending.values():
            rows.clear()
        self.ledger.clear()
        self.audit.clear()
        if any(len(c) > self.max_cached for c in self.cache.values()):
            for cache in self.cache.values():
                cache.clear()
            self.complete.clear()

    def forget(self) -> None:
        """Drop everything unflushed and every cache (after a failed flush)."""
        for table in _TABLES:
            self.pending[table].clear()
            self.cache[table].clear()
        self.complete.clear()
        self.ledger.clear()
        self.audit.clear()
        self.head = None


class BufferedTx:
    """The StoreTx of one callback in replay durability: an overlay over the buffer."""

    def __init__(self, buffer: WriteBuffer) -> None:
        self.buffer = buffer
        self.over: dict[str, dict[Any, Any]] = {t: {} for t in _TABLES}
        self.ledger: list[tuple[Any, ...]] = []
        self.audit: list[tuple[Any, ...]] = []
        self.head: tuple[int, bytes] | None = None

    def reset(self) -> None:
        for writes in self.over.values():
            writes.clear()
        self.ledger.clear()
        self.audit.clear()
        self.head = None

    def _get(self, table: str, key: Any) -> Any:
        """This callback's own write, else the committed value (cache first, then SQLite)."""
        value = self.over[table].get(key, _MISSING)
        if value is _MISSING:
            value = self.buffer.cache[table].get(key, _MISSING)
            if value is _MISSING:
                value = self.buffer.load(table, key)
        return value

    def claim_txn(self, aggregator: str, transaction_id: str) -> TxnRow | None:
        row = self._get("txns", (aggregator, transaction_id))
        return None if row is None else row.clone()

    def put_txn(self, row: TxnRow, *, new: bool) -> None:
        self.over["txns"][(row.aggregator, row.transaction_id)] = row

    def get_session(self, session_id: str) -> SessionRow | None:
        row = self._get("sessions", session_id)
        return None if row is None else row.clone()

    def put_session(self, row: SessionRow, *, new: bool) -> None:
        self.over["sessions"][row.session_id] = row

    def player_blocked(self, player_id: str) -> bool:
        return bool(self._get("players", player_id))

    def set_player_blocked(self, player_id: str, blocked: bool) -> None:
        self.over["players"][player_id] = blocked

    def get_balance(self, player_id: str, currency: str) -> int | None:
        value: int | None = self._get("accounts", (player_id, currency))
        return value

    def move(self, player_id: str, currency: str, delta: int) -> int | None:
        key = (player_id, currency)
        after = (self._get("accounts", key) or 0) + delta
        if after < 0:
            return None
        self.over["accounts"][key] = after
        return after

    def get_round(self, aggregator: str, round_id: str) -> RoundRow | None:
        row = self._get("rounds", (aggregator, round_id))
        return None if row is None else row.clone()

    def put_round(self, row: RoundRow, *, new: bool) -> None:
        self.over["rounds"][(row.aggregator, row.round_id)] = row

    def add_ledger(self, entry: LedgerEntry) -> None:
        self.ledger.append(entry)  # a NamedTuple: already the parameters of ledger_insert

    def append_audit(self, entry: AuditEntry) -> int:
        prev_seq, prev_hash = self.head or self.buffer.audit_head()
        seq = prev_seq + 1
        digest = chain_hash(prev_hash, seq, entry)
        self.audit.append(audit_values(seq, entry, prev_hash, digest))
        self.head = (seq, digest)
        return seq

    def adjustment_done(self, reference: str) -> int | None:
        value: int | None = self._get("adjustments", reference)
        return value

    def record_adjustment(self, reference: str, balance_after: int) -> None:
        self.over["adjustments"][reference] = balance_after
