"""Write-behind state for replay durability: the ledger in memory, flushed in groups.

A replay ledger is a scratch file owned by one process (SQLite's exclusive lock),
so the wallet's working state can live in dictionaries and reach SQLite in
batches (``executemany`` every ``group_size`` callbacks).  A callback writes
straight into the cached state and the pending batch, noting in an undo log what
each write replaced; a callback that fails is undone from that log, exactly as a
rolled-back transaction would leave things.  Writing in place (rather than into
an overlay merged at the end) keeps a read to one dictionary probe and a
finished callback to no work at all, which matters at tens of thousands per second.

Memory stays bounded: after a flush, a table caching more than ``max_cached`` rows
drops its oldest half (the rounds and bets just written stay, for the wins and
settles that follow), and a table that held every row until then keeps a
:class:`~.keyfilter.KeyFilter` of its keys, so a new transaction id is still known
absent without asking SQLite.

Rows handed to the engine are copies, because the engine mutates rows before
writing them back and a failed callback must not leave a mutated row behind.  Rows
the engine writes are kept as given: the engine does not touch a row after it
put it (see :mod:`wallet_core.engine`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from itertools import islice
from typing import Any

from wallet_core.audit import AUDIT_COLUMNS, GENESIS, audit_values, chain_hash

from .base import AuditEntry, LedgerEntry, LocalTx, RoundRow, SessionRow, TxnRow
from .keyfilter import KeyFilter
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
#: Each table's key columns, in the order of the cache's keys (one column: a bare value).
_KEYS = {
    "accounts": "player_id, currency",
    "sessions": "session_id",
    "rounds": "aggregator, round_id",
    "txns": "aggregator, transaction_id",
    "players": "player_id",
    "adjustments": "reference",
}
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

    def __init__(self, conn: sqlite3.Connection, max_cached: int = 100_000) -> None:
        self.conn = conn
        self.max_cached = max_cached
        #: Per table: every value known (committed, or written by a finished callback).
        #: ``cache`` and ``pending`` hold the same dict objects for the buffer's life
        #: (cleared, never replaced), so a transaction may keep references to them.
        self.cache: dict[str, dict[Any, Any]] = {t: {} for t in _TABLES}
        #: Per table: the values written since the last flush.
        self.pending: dict[str, dict[Any, Any]] = {t: {} for t in _TABLES}
        self.ledger: list[tuple[Any, ...]] = []
        self.audit: list[tuple[Any, ...]] = []
        self.head: tuple[int, bytes] | None = None
        #: Tables whose cache holds every row (they were empty at open and never evicted),
        #: so a miss means "absent" without asking SQLite.
        self.complete = {t for t in _TABLES if self._empty(t)}
        #: Tables whose cache was evicted after being complete: a filter of every key
        #: written answers most misses as "absent" (see :mod:`.keyfilter`).  Shared with
        #: each :class:`BufferedTx`, which adds the keys it writes.
        self.filters: dict[str, KeyFilter] = {}

    def _empty(self, table: str) -> bool:
        return self.conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None

    def miss(self, table: str, key: Any) -> Any:
        """The committed value of a ``key`` the cache does not hold (None when absent)."""
        if table in self.complete:
            return None
        known = self.filters.get(table)
        if known is not None and key not in known:
            return None  # never written: absent (not cached, the filter answers again)
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
        for table, cache in self.cache.items():
            if len(cache) > self.max_cached:  # bounded memory: part of this table reads SQLite
                if table in self.complete:  # every key is in the cache: remember them compactly
                    self.filters[table] = KeyFilter(cache, capacity=2 * len(cache))
                    self.complete.discard(table)
                _evict_oldest(cache, len(cache) - self.max_cached // 2)
        for table, known in list(self.filters.items()):
            if known.full:  # everything is committed now: rebuild it twice as large
                self.filters[table] = self._filter_of(table, 2 * known.count)

    def _filter_of(self, table: str, capacity: int) -> KeyFilter:
        keys = self.conn.execute(f"SELECT {_KEYS[table]} FROM {table}")
        if "," not in _KEYS[table]:
            return KeyFilter((key for (key,) in keys), capacity=capacity)
        return KeyFilter(keys, capacity=capacity)

    def forget(self) -> None:
        """Drop everything unflushed and every cache (after a failed flush)."""
        for table in _TABLES:
            self.pending[table].clear()
            self.cache[table].clear()
        self.complete.clear()
        self.filters.clear()
        self.ledger.clear()
        self.audit.clear()
        self.head = None


class BufferedTx(LocalTx):
    """The StoreTx of one callback in replay durability: writes in place, with an undo log.

    :meth:`begin` and then either nothing (the callback finished: its writes stand)
    or :meth:`rollback` (it failed: every write is undone).
    """

    def __init__(self, buffer: WriteBuffer) -> None:
        self.buffer = buffer
        self._cache = buffer.cache
        self._pending = buffer.pending
        # The hot reads probe their table's dict inline (a helper call each costs more).
        self._txns = buffer.cache["txns"]
        self._sessions = buffer.cache["sessions"]
        self._accounts = buffer.cache["accounts"]
        self._rounds = buffer.cache["rounds"]
        self._filters = buffer.filters
        #: (table, key, cached value before, pending value before), in write order.
        self._undo: list[tuple[str, Any, Any, Any]] = []
        #: Lengths of the ledger and audit batches and the audit head at :meth:`begin`.
        self._marks: tuple[int, int, tuple[int, bytes] | None] = (0, 0, None)

    def begin(self) -> None:
        buffer = self.buffer
        self._undo.clear()
        self._marks = (len(buffer.ledger), len(buffer.audit), buffer.head)

    def rollback(self) -> None:
        """Undo every write since :meth:`begin`, newest first."""
        for table, key, cached, pending in reversed(self._undo):
            _restore(self._cache[table], key, cached)
            _restore(self._pending[table], key, pending)
        self._undo.clear()
        buffer = self.buffer
        ledger_length, audit_length, buffer.head = self._marks
        del buffer.ledger[ledger_length:]
        del buffer.audit[audit_length:]

    def _read(self, table: str, key: Any) -> Any:
        value = self._cache[table].get(key, _MISSING)
        if value is _MISSING:
            value = self.buffer.miss(table, key)
        return value

    def _write(self, table: str, key: Any, value: Any) -> None:
        cache, pending = self._cache[table], self._pending[table]
        cached = cache.get(key, _MISSING)
        self._undo.append((table, key, cached, pending.get(key, _MISSING)))
        cache[key] = value
        pending[key] = value
        if self._filters and cached is _MISSING:  # a key the cache did not hold may be new
            known = self._filters.get(table)
            if known is not None:  # a rolled-back key stays in it: a false hit, no harm
                known.add(key)

    def claim_txn(self, aggregator: str, transaction_id: str) -> TxnRow | None:
        key = (aggregator, transaction_id)
        row = self._txns.get(key, _MISSING)
        if row is _MISSING:
            row = self.buffer.miss("txns", key)
        return None if row is None else row.clone()

    def put_txn(self, row: TxnRow, *, new: bool) -> None:
        self._write("txns", (row.aggregator, row.transaction_id), row)

    def get_session(self, session_id: str) -> SessionRow | None:
        row = self._sessions.get(session_id, _MISSING)
        if row is _MISSING:
            row = self.buffer.miss("sessions", session_id)
        return None if row is None else row.clone()

    def put_session(self, row: SessionRow, *, new: bool) -> None:
        self._write("sessions", row.session_id, row)

    def player_blocked(self, player_id: str) -> bool:
        return bool(self._read("players", player_id))

    def set_player_blocked(self, player_id: str, blocked: bool) -> None:
        self._write("players", player_id, blocked)

    def get_balance(self, player_id: str, currency: str) -> int | None:
        key = (player_id, currency)
        value: int | None = self._accounts.get(key, _MISSING)
        if value is _MISSING:
            value = self.buffer.miss("accounts", key)
        return value

    def move(self, player_id: str, currency: str, delta: int) -> int | None:
        key = (player_id, currency)
        before = self._accounts.get(key, _MISSING)
        if before is _MISSING:
            before = self.buffer.miss("accounts", key)
        after = (before or 0) + delta
        if after < 0:
            return None
        self._write("accounts", key, after)
        return after

    def get_round(self, aggregator: str, round_id: str) -> RoundRow | None:
        key = (aggregator, round_id)
        row = self._rounds.get(key, _MISSING)
        if row is _MISSING:
            row = self.buffer.miss("rounds", key)
        return None if row is None else row.clone()

    def put_round(self, row: RoundRow, *, new: bool) -> None:
        self._write("rounds", (row.aggregator, row.round_id), row)

    def add_ledger(self, entry: LedgerEntry) -> None:
        # An exact tuple: sqlite3 binds it faster than the NamedTuple itself (its slow path).
        self.buffer.ledger.append(tuple(entry))

    def append_audit(self, entry: AuditEntry) -> int:
        buffer = self.buffer
        prev_seq, prev_hash = buffer.head or buffer.audit_head()
        seq = prev_seq + 1
        digest = chain_hash(prev_hash, seq, entry)
        buffer.audit.append(audit_values(seq, entry, prev_hash, digest))
        buffer.head = (seq, digest)
        return seq

    def adjustment_done(self, reference: str) -> int | None:
        value: int | None = self._read("adjustments", reference)
        return value

    def record_adjustment(self, reference: str, balance_after: int) -> None:
        self._write("adjustments", reference, balance_after)


def _evict_oldest(cache: dict[Any, Any], count: int) -> None:
    """Drop the ``count`` entries cached first: recent rows (a round just bet in) stay."""
    for key in list(islice(cache, count)):
        del cache[key]


def _restore(values: dict[Any, Any], key: Any, before: Any) -> None:
    if before is _MISSING:
        values.pop(key, None)
    else:
        values[key] = before
