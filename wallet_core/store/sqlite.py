"""The SQLite store: the embedded default, for replay and for single-node wallets.

Two durability modes:

* ``live``: WAL, ``synchronous=FULL``, one ``BEGIN IMMEDIATE`` transaction per
  callback, committed before the answer leaves.
* ``replay``: the ledger is a disposable scratch file owned by one process, so
  the working state lives in memory (:mod:`.buffer`) and reaches SQLite every
  ``group_size`` callbacks in one transaction, with ``synchronous=OFF`` and an
  exclusive lock.  Each callback is still all-or-nothing (a failed one is undone
  from its undo log); a crash loses at most the unflushed group.

One connection serves all threads, behind a lock whose wait is bounded: a
request that cannot get it in time gets :class:`StoreBusy` (RETRY_LATER).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Literal

from wallet_core.audit import AUDIT_COLUMNS, GENESIS, audit_values, chain_hash
from wallet_core.errors import SchemaOutdated, StorageError, StoreBusy

from .base import (
    SCHEMA_VERSION,
    AuditEntry,
    AuditRow,
    HistoryRow,
    LedgerEntry,
    LocalTx,
    RoundRow,
    SessionRow,
    StoreTx,
    TxnRow,
)
from .buffer import BufferedTx, WriteBuffer
from .rows import (
    SQLITE as SQL,
)
from .rows import (
    history_from,
    ledger_values,
    round_from,
    round_values,
    session_from,
    session_values,
    txn_from,
    txn_values,
)
from .schema import SQLITE_MIGRATIONS

__all__ = ["SqliteStore"]

Durability = Literal["live", "replay"]


class _SqliteTx(LocalTx):
    """The operations of one transaction; instances are reused, state lives in SQLite."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._x = conn.execute

    def claim_txn(self, aggregator: str, transaction_id: str) -> TxnRow | None:
        row = self._x(SQL.txn_select, (aggregator, transaction_id)).fetchone()
        return None if row is None else txn_from(aggregator, transaction_id, row)

    def put_txn(self, row: TxnRow, *, new: bool) -> None:
        self._x(SQL.txn_insert if new else SQL.txn_update, txn_values(row))

    def get_session(self, session_id: str) -> SessionRow | None:
        row = self._x(SQL.session_select, (session_id,)).fetchone()
        return None if row is None else session_from(session_id, row)

    def put_session(self, row: SessionRow, *, new: bool) -> None:
        if new:
            self._x(SQL.session_insert, session_values(row))
        else:
            self._x(
                "UPDATE sessions SET last_seen_us = ?, closed_us = ? WHERE session_id = ?",
                (row.last_seen_us, row.closed_us, row.session_id),
            )

    def player_blocked(self, player_id: str) -> bool:
        row = self._x("SELECT blocked FROM players WHERE player_id = ?", (player_id,)).fetchone()
        return bool(row and row[0])

    def set_player_blocked(self, player_id: str, blocked: bool) -> None:
        self._x(
            "INSERT INTO players (player_id, blocked) VALUES (?, ?)"
            " ON CONFLICT (player_id) DO UPDATE SET blocked = excluded.blocked",
            (player_id, int(blocked)),
        )

    def get_balance(self, player_id: str, currency: str) -> int | None:
        row = self._x(
            "SELECT balance FROM accounts WHERE player_id = ? AND currency = ?",
            (player_id, currency),
        ).fetchone()
        return None if row is None else int(row[0])

    def move(self, player_id: str, currency: str, delta: int) -> int | None:
        row = self._x(
            "UPDATE accounts SET balance = balance + ?1"
            " WHERE player_id = ?2 AND currency = ?3 AND balance + ?1 >= 0 RETURNING balance",
            (delta, player_id, currency),
        ).fetchone()
        if row is not None:
            return int(row[0])
        if delta < 0 or self.get_balance(player_id, currency) is not None:
            return None
        self._x(
            "INSERT INTO accounts (player_id, currency, balance) VALUES (?, ?, ?)",
            (player_id, currency, delta),
        )
        return delta

    def get_round(self, aggregator: str, round_id: str) -> RoundRow | None:
        row = self._x(SQL.round_select, (aggregator, round_id)).fetchone()
        return None if row is None else round_from(aggregator, round_id, row)

    def put_round(self, row: RoundRow, *, new: bool) -> None:
        self._x(SQL.round_insert if new else SQL.round_update, round_values(row))

    def add_ledger(self, entry: LedgerEntry) -> None:
        self._x(SQL.ledger_insert, ledger_values(entry))

    def append_audit(self, entry: AuditEntry) -> int:
        row = self._x("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev_seq, prev_hash = (0, GENESIS) if row is None else (int(row[0]), bytes(row[1]))
        seq = prev_seq + 1
        digest = chain_hash(prev_hash, seq, entry)
        self._x(
            f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            audit_values(seq, entry, prev_hash, digest),
        )
        return seq

    def adjustment_done(self, reference: str) -> int | None:
        row = self._x(
            "SELECT balance_after FROM adjustments WHERE reference = ?", (reference,)
        ).fetchone()
        return None if row is None else int(row[0])

    def record_adjustment(self, reference: str, balance_after: int) -> None:
        self._x(
            "INSERT INTO adjustments (reference, balance_after) VALUES (?, ?)",
            (reference, balance_after),
        )


class SqliteStore:
    """See the module docstring; ``path`` may be ``":memory:"`` for unit tests."""

    def __init__(
        self,
        path: str | Path,
        *,
        durability: Durability = "live",
        group_size: int = 10_000,
        cache_rows: int = 100_000,
        lock_timeout_s: float = 2.0,
        create: bool = True,
        migrate: bool = False,
    ) -> None:
        self.path = str(path)
        if not create and self.path != ":memory:" and not Path(self.path).exists():
            raise StorageError(f"SQLite database {self.path} does not exist")
        self.durability = durability
        self._group_size = group_size if durability == "replay" else 1
        self._lock = threading.Lock()
        self._lock_timeout = lock_timeout_s
        try:
            self._conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=lock_timeout_s,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from None
        self._in_group = 0
        x = self._conn.execute
        try:
            if durability == "replay":
                # Before anything is written (a no-op on an existing file): larger pages mean
                # fewer B-tree pages touched per flush of a few thousand rows (~10 % of it).
                x("PRAGMA page_size=16384")
            x("PRAGMA journal_mode=WAL")
            x("PRAGMA synchronous=" + ("FULL" if durability == "live" else "OFF"))
            x("PRAGMA foreign_keys=OFF")
            if durability == "replay":
                x("PRAGMA locking_mode=EXCLUSIVE")
                x("PRAGMA cache_size=-16384")
            version = self.schema_version()
            self.migrations_applied = 0
            if migrate or (version == 0 and create and not self._has_tables()):
                self.migrations_applied = self.upgrade()
            elif version < SCHEMA_VERSION:
                raise SchemaOutdated(
                    f"store {self.path} is at schema {version}, this version needs "
                    f"{SCHEMA_VERSION}: run 'rgs-shadow db upgrade --db URL'"
                )
        except sqlite3.Error as exc:
            self._conn.close()
            raise StorageError(f"cannot use SQLite database {self.path}: {exc}") from None
        self._tx = _SqliteTx(self._conn)
        self._buffer = WriteBuffer(self._conn, cache_rows) if durability == "replay" else None
        self._buffered_scope = (
            _BufferedScope(self, self._buffer, BufferedTx(self._buffer))
            if self._buffer is not None
            else None
        )

    # -- schema -----------------------------------------------------------------------------
    def _has_tables(self) -> bool:
        row = self._conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()
        return bool(row[0])

    def schema_version(self) -> int:
        try:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def upgrade(self) -> int:
        """Apply every pending migration; returns how many were applied."""
        version = self.schema_version()
        applied = 0
        with self._lock:
            for number, statements in enumerate(SQLITE_MIGRATIONS, start=1):
                if number <= version:
                    continue
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in statements:
                        self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (str(number),),
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                applied += 1
        return applied

    # -- transactions -----------------------------------------------------------------------
    def transaction(self) -> AbstractContextManager[StoreTx]:
        if self._buffered_scope is not None:
            return self._buffered_scope
        return self._sql_transaction()

    def _acquire(self) -> None:
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise StoreBusy("the wallet is busy: lock wait exceeded")

    @contextmanager
    def _sql_transaction(self) -> Iterator[StoreTx]:
        self._acquire()
        try:
            yield from self._sql_statements()
        finally:
            self._lock.release()

    def _sql_statements(self) -> Iterator[StoreTx]:
        x = self._conn.execute
        try:
            x("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _storage_error(exc) from None
        try:
            yield self._tx
        except BaseException as exc:
            try:
                x("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise _storage_error(exc) from None
            raise
        try:
            x("COMMIT")
        except sqlite3.Error as exc:
            try:
                x("ROLLBACK")
            except sqlite3.Error:
                pass
            raise _storage_error(exc) from None

    def _buffered_enter(self, tx: BufferedTx) -> BufferedTx:
        self._acquire()
        tx.begin()
        return tx

    def _buffered_exit(
        self, buffer: WriteBuffer, tx: BufferedTx, exc: BaseException | None
    ) -> None:
        """Keep a finished callback (flushing every ``group_size``); undo a failed one."""
        try:
            if exc is None:
                self._in_group += 1
                if self._in_group >= self._group_size:
                    self._flush_buffer(buffer)
            else:
                tx.rollback()
                if isinstance(exc, sqlite3.Error):
                    raise _storage_error(exc) from None
        finally:
            self._lock.release()

    def _flush_buffer(self, buffer: WriteBuffer) -> None:
        self._in_group = 0
        try:
            buffer.flush()
        except sqlite3.Error as exc:
            raise _storage_error(exc) from None

    def flush(self) -> None:
        """Write grouped callbacks out (replay durability); a no-op in live durability."""
        if self._buffer is not None:
            with self._lock:
                self._flush_buffer(self._buffer)

    # -- whole-store reads ------------------------------------------------------------------
    def get_mode(self) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'mode'").fetchone()
        return None if row is None else str(row[0])

    def set_mode(self, mode: str) -> None:
        self.flush()
        with self._lock:
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES ('mode', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (mode,),
            )

    def audit_rows(self) -> Iterator[AuditRow]:
        self.flush()
        cursor = self._conn.execute(
            "SELECT seq, at_us, aggregator, kind, headers, request, decision, response, player_id,"
            " currency, amount_minor, balance_after, prev_hash, hash FROM audit ORDER BY seq"
        )
        for r in cursor:
            entry = AuditEntry(
                r[1], r[2], r[3], r[4], _blob(r[5]), r[6], _blob(r[7]), r[8], r[9], r[10], r[11]
            )
            yield AuditRow(int(r[0]), entry, _blob(r[12]), _blob(r[13]))

    def balances(self) -> dict[tuple[str, str], int]:
        self.flush()
        rows = self._conn.execute("SELECT player_id, currency, balance FROM accounts")
        return {(p, c): int(b) for p, c, b in rows}

    def ledger_sums(self) -> dict[tuple[str, str], int]:
        self.flush()
        rows = self._conn.execute(
            "SELECT player_id, currency, sum(amount_minor) FROM ledger GROUP BY player_id, currency"
        )
        return {(p, c): int(s) for p, c, s in rows}

    def txn_history(self, since_us: int | None, until_us: int | None) -> Iterator[HistoryRow]:
        self.flush()
        refs = dict(
            self._conn.execute(
                "SELECT refunded_by, transaction_id FROM txns WHERE refunded_by IS NOT NULL"
            )
        )
        cursor = self._conn.execute(
            "SELECT a.seq, a.at_us, a.aggregator, json_extract(a.decision, '$.event'),"
            " json_extract(a.decision, '$.transaction_id'), json_extract(a.decision, '$.outcome'),"
            " json_extract(a.decision, '$.code'), a.player_id, a.currency, a.amount_minor,"
            " a.balance_after, t.round_id, coalesce(json_extract(a.decision, '$.flags'), '[]')"
            " FROM audit a LEFT JOIN txns t ON t.aggregator = a.aggregator"
            " AND t.transaction_id = json_extract(a.decision, '$.transaction_id')"
            " WHERE a.kind = 'callback' AND a.at_us >= ? AND a.at_us < ? ORDER BY a.seq",
            (
                -(2**63) if since_us is None else since_us,
                2**63 - 1 if until_us is None else until_us,
            ),
        )
        for r in cursor:
            ref = refs.get(r[4]) if r[3] == "refund" else None
            yield history_from(r, ref)

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement outside the engine (tests, maintenance); returns all rows."""
        self.flush()
        with self._lock:
            return list(self._conn.execute(sql, params))

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._conn.close()


class _BufferedScope:
    """``SqliteStore.transaction()`` in replay durability, one object reused per store.

    A class rather than a ``@contextmanager`` generator, which costs several times
    more to enter and leave, for every callback of a replay.
    """

    __slots__ = ("_buffer", "_store", "_tx")

    def __init__(self, store: SqliteStore, buffer: WriteBuffer, tx: BufferedTx) -> None:
        self._store, self._buffer, self._tx = store, buffer, tx

    def __enter__(self) -> StoreTx:
        return self._store._buffered_enter(self._tx)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self._store._buffered_exit(self._buffer, self._tx, exc)


def _blob(value: object) -> bytes:
    """Bytes of a BLOB column; a tampered row may hold another type, which must not crash."""
    if isinstance(value, bytes):
        return value
    return b"" if value is None else str(value).encode()


def _storage_error(exc: sqlite3.Error) -> StorageError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusy(f"the wallet is busy: {text}")
    return StorageError(f"SQLite: {text}")
