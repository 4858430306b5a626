"""The PostgreSQL store: many wallet workers over one ledger, each callback one transaction.

Concurrency is settled inside the database, never by a Python lock, so several
server processes can share a ledger:

* ``claim_txn`` takes a transaction-scoped advisory lock on ``(aggregator,
  transaction_id)`` *then* reads the record in a second statement (under READ
  COMMITTED each statement sees what committed before it started): 50 concurrent
  copies of one callback queue on the lock and the 49 late ones see the first's row.
  Both statements share one round trip (pipeline mode, see :mod:`.postgres_tx`).
* The debit is conditional (``balance + d >= 0`` in the ``UPDATE``'s ``WHERE``, which
  a waiting updater re-checks against the new row), with ``CHECK (balance >= 0)``
  behind it.  The balance the engine reads (unlocked, as before) comes with the
  session or the idempotency record, in the same statement.
* A round is read after an advisory lock on its key, which every writer of a round
  takes first (so no two callbacks race to create it, and the read is current);
  sessions only ever move forward (``GREATEST``, ``COALESCE``), and a session that
  does not exist yet is guarded by an advisory lock on its key.
* The audit chain stays one chain: ``chain_audit`` (the engine's last write) locks
  the single ``audit_head`` row, then one statement reads the last audit row, hashes
  the new one in the server (the same hash as :func:`~wallet_core.audit.chain_hash`)
  and inserts it, and the COMMIT follows in the same pipeline: the lock every writer
  queues on is held for the server's own work, not for a round trip to the client.

Every wait is bounded: the pool wait (``pool_timeout_s``), each lock wait
(``lock_timeout``), each statement (``statement_timeout``), and each round trip by a
client-side guard above those (the connection is then dropped).  Running out of any
of them, a deadlock or a lost insert race is :class:`StoreBusy` (RETRY_LATER); any
other database failure is :class:`StorageError`.  Either way nothing was written.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout

from wallet_core.errors import SchemaOutdated, StorageError, StoreBusy

from .base import SCHEMA_VERSION, AuditEntry, AuditRow, HistoryRow
from .postgres_tx import PREPARED, PostgresTx
from .rows import history_from
from .schema import POSTGRES_MIGRATIONS

__all__ = ["PostgresStore"]

#: Advisory lock key that serializes concurrent ``db upgrade`` runs.
_MIGRATION_LOCK = 0x7267735F73686477  # "rgs_shdw"
_BUSY = (
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.UniqueViolation,
)


class PostgresStore:
    """See the module docstring.  SQLite-only options (``group_size``) are accepted and ignored.

    ``durability="replay"`` turns off ``synchronous_commit``: a replay ledger is disposable,
    so waiting for the WAL flush buys nothing (the analogue of SQLite's grouped commits).
    """

    def __init__(
        self,
        url: str,
        *,
        durability: str = "live",
        create: bool = True,
        migrate: bool = False,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout_s: float = 0.8,
        lock_timeout_s: float = 1.0,
        statement_timeout_s: float = 1.2,
        connect_timeout_s: float = 5.0,
        decision_budget_s: float | None = None,
        **_ignored: Any,
    ) -> None:
        self.url = url
        self.durability = durability
        self._pool_timeout = pool_timeout_s
        self._timeouts = (
            f"{int(lock_timeout_s * 1000)}ms".encode(),
            f"{int(statement_timeout_s * 1000)}ms".encode(),
        )
        #: How long a transaction waits for any one answer before giving the connection up: a
        #: guard far above the server's own bounds (lock and statement timeouts) per round trip.
        self.guard_ms = int((4 * (lock_timeout_s + statement_timeout_s) + 5) * 1000)
        #: With a budget, a whole transaction (pool wait included) gives up once it is spent:
        #: ``serve --inline`` decides one callback at a time, and the ones queued behind it
        #: must still be answered within 3 s.
        self.decision_budget_s = decision_budget_s
        self._prepared: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        synchronous = "off" if durability == "replay" else "on"

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                "SELECT set_config('synchronous_commit', %s, false),"
                " set_config('application_name', 'rgs-shadow', false)",
                (synchronous,),
            )

        self._pool: ConnectionPool = ConnectionPool(
            url,
            min_size=pool_min,
            max_size=max(pool_min, pool_max),
            timeout=pool_timeout_s,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_s))},
            configure=configure,
            open=False,
            name="rgs-shadow",
        )
        try:
            # One direct attempt first: a clear one-line error now, not pool retries and warnings.
            psycopg.connect(url, connect_timeout=max(1, int(connect_timeout_s))).close()
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to {_safe(url)}: {_first_line(exc)}") from None
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except (PoolTimeout, psycopg.Error) as exc:
            self._pool.close(timeout=2)
            raise StorageError(f"cannot connect to PostgreSQL at {_safe(url)}: {exc}") from None
        try:
            version = self.schema_version()
            self.migrations_applied = 0
            if migrate or (version == 0 and create and not self._has_tables()):
                self.migrations_applied = self.upgrade()
            elif version < SCHEMA_VERSION:
                raise SchemaOutdated(
                    f"store {_safe(url)} is at schema {version}, this version needs "
                    f"{SCHEMA_VERSION}: run 'rgs-shadow db upgrade --db URL'"
                )
            elif version > SCHEMA_VERSION:
                raise StorageError(
                    f"store {_safe(url)} is at schema {version}, newer than this version "
                    f"({SCHEMA_VERSION}): upgrade rgs-shadow"
                )
        except BaseException:
            self._pool.close(timeout=2)
            raise

    # -- schema -----------------------------------------------------------------------------
    def _has_tables(self) -> bool:
        rows = self.execute(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"
        )
        return bool(rows[0][0])

    def schema_version(self) -> int:
        with self._connection() as conn:
            return _schema_version(conn)

    def upgrade(self) -> int:
        """Apply every pending migration in one transaction; returns how many were applied."""
        applied = 0
        with self._connection() as conn, _mapped(), conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            version = _schema_version(conn)
            for number, statements in enumerate(POSTGRES_MIGRATIONS, start=1):
                if number <= version:
                    continue
                for statement in statements:
                    conn.execute(statement.encode())
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )
                applied += 1
        return applied

    # -- transactions -----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        budget = self.decision_budget_s
        deadline = None if budget is None else time.monotonic() + budget
        with self._connection(budget) as conn, _mapped():
            if conn not in self._prepared:
                _prepare(conn)
                self._prepared.add(conn)
            tx = PostgresTx(conn, self, deadline)
            try:
                tx.begin(self._timeouts)
                yield tx
                tx.commit()
            except BaseException:
                tx.abort()
                raise

    @contextmanager
    def _connection(self, budget: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        wait = self._pool_timeout if budget is None else min(self._pool_timeout, budget)
        try:
            conn = self._pool.getconn(timeout=wait)
        except PoolTimeout:
            raise StoreBusy("the wallet is busy: no database connection in time") from None
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {exc}") from None
        try:
            yield conn
        finally:
            self._pool.putconn(conn)

    def flush(self) -> None:
        """Nothing to do: every transaction commits itself."""

    # -- whole-store reads ------------------------------------------------------------------
    def get_mode(self) -> str | None:
        rows = self.execute("SELECT value FROM meta WHERE key = 'mode'")
        return None if not rows else str(rows[0][0])

    def set_mode(self, mode: str) -> None:
        with self.transaction() as tx:
            tx.set_meta("mode", mode)

    def audit_rows(self) -> Iterator[AuditRow]:
        with self._connection() as conn, _mapped(), conn.transaction():
            cursor = conn.cursor(name="rgs_shadow_audit")
            cursor.itersize = 2000
            cursor.execute(
                "SELECT seq, at_us, aggregator, kind, headers, request, decision, response,"
                " player_id, currency, amount_minor, balance_after, prev_hash, hash"
                " FROM audit ORDER BY seq"
            )
            for r in cursor:
                entry = AuditEntry(
                    r[1], r[2], r[3], r[4], bytes(r[5]), r[6], bytes(r[7]), r[8], r[9], r[10], r[11]
                )
                yield AuditRow(int(r[0]), entry, bytes(r[12]), bytes(r[13]))

    def txn_history(self, since_us: int | None, until_us: int | None) -> Iterator[HistoryRow]:
        """Every callback decided in ``[since_us, until_us)``, in audit order (for reconcile)."""
        refs = {
            str(refund): str(bet)
            for refund, bet in self.execute(
                "SELECT refunded_by, transaction_id FROM txns WHERE refunded_by IS NOT NULL"
            )
        }
        low = -(2**63) if since_us is None else since_us
        high = 2**63 - 1 if until_us is None else until_us
        with self._connection() as conn, _mapped(), conn.transaction():
            cursor = conn.cursor(name="rgs_shadow_history")
            cursor.itersize = 2000
            cursor.execute(
                "SELECT a.seq, a.at_us, a.aggregator, d.doc ->> 'event', d.doc ->> 'transaction_id',"
                " d.doc ->> 'outcome', d.doc ->> 'code', a.player_id, a.currency, a.amount_minor,"
                " a.balance_after, t.round_id, coalesce((d.doc -> 'flags')::text, '[]')"
                " FROM audit a CROSS JOIN LATERAL (SELECT a.decision::jsonb AS doc) d"
                " LEFT JOIN txns t ON t.aggregator = a.aggregator"
                " AND t.transaction_id = d.doc ->> 'transaction_id'"
                " WHERE a.kind = 'callback' AND a.at_us >= %s AND a.at_us < %s ORDER BY a.seq",
                (low, high),
            )
            for r in cursor:
                ref = refs.get(r[4]) if r[3] == "refund" else None
                yield history_from(r, ref)

    def balances(self) -> dict[tuple[str, str], int]:
        rows = self.execute("SELECT player_id, currency, balance FROM accounts")
        return {(str(p), str(c)): int(b) for p, c, b in rows}  # type: ignore[call-overload]

    def ledger_sums(self) -> dict[tuple[str, str], int]:
        rows = self.execute(
            "SELECT player_id, currency, sum(amount_minor) FROM ledger GROUP BY player_id, currency"
        )
        return {(str(p), str(c)): int(s) for p, c, s in rows}  # type: ignore[call-overload]

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement outside the engine (tests, maintenance); returns all rows.

        ``sql`` uses ``?`` placeholders as with SQLite, so tests can share statements.
        """
        with self._connection() as conn, _mapped():
            cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s").encode(), params)
            return list(cursor.fetchall()) if cursor.description is not None else []

    def close(self) -> None:
        self._pool.close(timeout=5)


@contextmanager
def _mapped() -> Iterator[None]:
    """Turn psycopg's exceptions into the store's own: busy (retry) or failed."""
    try:
        yield
    except _BUSY as exc:
        raise StoreBusy(f"the wallet is busy: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise StorageError(f"PostgreSQL: {_first_line(exc)}") from None
    except PoolTimeout:
        raise StoreBusy("the wallet is busy: no database connection in time") from None


def _prepare(conn: psycopg.Connection[Any]) -> None:
    """Prepare every statement of :mod:`.postgres_tx` on a connection (once in its life)."""
    pg = conn.pgconn
    for name, (sql, _binary) in PREPARED.items():
        result = pg.prepare(name, sql)
        if result.status != pq.ExecStatus.COMMAND_OK:
            message = (result.error_message or b"").decode("utf-8", "replace").strip()
            raise StorageError(f"PostgreSQL: cannot prepare {name.decode()}: {message}")


def _schema_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(found[0]) if found else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
