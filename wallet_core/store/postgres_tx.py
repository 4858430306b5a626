"""The operations of one PostgreSQL transaction (the :class:`~.base.StoreTx` protocol).

Kept apart from :mod:`.postgres` (pool, schema, whole-store reads) so each module
holds one concept.  Why each statement is shaped as it is, see the docstring of
:mod:`.postgres`; in short: advisory locks on keys that may not exist yet, a
conditional debit, monotonic session updates, one audit chain.

How the statements travel (this is the hot path of the wallet server on PostgreSQL):

* Straight over libpq (psycopg's ``pgconn``), as named prepared statements with text
  parameters (``bytea`` ones binary) and text results: none of psycopg's per-statement
  Python machinery (cursor, adapters, query conversion), which cost most of a callback.
* In libpq's *pipeline mode*: a statement whose result the engine does not need
  (``BEGIN``, the timeouts, an advisory lock, the writes) is only queued; it travels
  with the next read.  A callback is about six round trips instead of sixteen.
  Statements still run one after the other, each with its own READ COMMITTED
  snapshot, so "lock, then read" keeps its meaning when both share a round trip.
* Waiting for the server happens in ``poll`` (which releases the GIL; libpq's own
  blocking read would hold it), bounded by a guard well above the server-side
  timeouts; past it the connection is closed and the callback is :class:`StoreBusy`.
"""

from __future__ import annotations

import re
import select
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq

from wallet_core.audit import GENESIS
from wallet_core.errors import StorageError, StoreBusy

from .base import AuditEntry, LedgerEntry, RoundRow, SessionRow, TxnRow

if TYPE_CHECKING:
    from .postgres import PostgresStore

__all__ = ["PREPARED", "PostgresTx"]

_TXN = (
    "event, fingerprint, code, status, body, balance_after, player_id, currency,"
    " amount_minor, round_id, applied, refunded_by"
)
_T = "t.event, t.fingerprint, t.code, t.status, t.body, t.balance_after, t.player_id,"
_T += " t.currency, t.amount_minor, t.round_id, t.applied, t.refunded_by"
_ROUND = "player_id, currency, bet_total, win_total, refund_total, settled_us"
_LEDGER = (
    "at_us, aggregator, transaction_id, kind, player_id, currency, amount_minor, balance_after"
)
_AUDIT = (
    "seq, at_us, aggregator, kind, headers, request, decision, response, player_id, currency,"
    " amount_minor, balance_after, prev_hash, hash"
)

#: Every statement of the hot path, prepared once per connection: name -> (SQL, bytea params).
PREPARED: dict[bytes, tuple[bytes, tuple[int, ...]]] = {
    name.encode(): (sql.encode(), binary)
    for name, sql, binary in [
        (
            "rgs_timeouts",
            "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)",
            (),
        ),
        ("rgs_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", ()),
        # The idempotency record, and the balance of its account (a repeat answers with it).
        (
            "rgs_txn",
            f"SELECT {_T}, a.balance FROM txns t LEFT JOIN accounts a"
            " ON a.player_id = t.player_id AND a.currency = t.currency"
            " WHERE t.aggregator = $1 AND t.transaction_id = $2",
            (),
        ),
        (
            "rgs_txn_insert",
            f"INSERT INTO txns ({_TXN}, aggregator, transaction_id)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)",
            (1, 4),
        ),
        (
            "rgs_txn_update",
            "UPDATE txns SET event=$1, fingerprint=$2, code=$3, status=$4, body=$5,"
            " balance_after=$6, player_id=$7, currency=$8, amount_minor=$9, round_id=$10,"
            " applied=$11, refunded_by=$12 WHERE aggregator = $13 AND transaction_id = $14",
            (1, 4),
        ),
        # The session, with what the engine reads next: its account's balance, its player's block.
        (
            "rgs_session",
            "SELECT s.aggregator, s.player_id, s.currency, s.opened_us, s.last_seen_us,"
            " s.closed_us, a.balance, p.blocked FROM sessions s"
            " LEFT JOIN accounts a ON a.player_id = s.player_id AND a.currency = s.currency"
            " LEFT JOIN players p ON p.player_id = s.player_id WHERE s.session_id = $1",
            (),
        ),
        (
            "rgs_session_insert",
            "INSERT INTO sessions (session_id, aggregator, player_id, currency, opened_us,"
            " last_seen_us, closed_us) VALUES ($1,$2,$3,$4,$5,$6,$7)",
            (),
        ),
        (
            # Unlocked read, so only move forward: a concurrent close is never undone.
            "rgs_session_touch",
            "UPDATE sessions SET last_seen_us = GREATEST(last_seen_us, $1),"
            " closed_us = COALESCE(closed_us, $2) WHERE session_id = $3",
            (),
        ),
        ("rgs_blocked", "SELECT blocked FROM players WHERE player_id = $1", ()),
        (
            "rgs_block",
            "INSERT INTO players (player_id, blocked) VALUES ($1, $2)"
            " ON CONFLICT (player_id) DO UPDATE SET blocked = excluded.blocked",
            (),
        ),
        ("rgs_balance", "SELECT balance FROM accounts WHERE player_id = $1 AND currency = $2", ()),
        (
            # A credit cannot fail the CHECK; the upsert also settles two first credits racing.
            "rgs_credit",
            "INSERT INTO accounts (player_id, currency, balance) VALUES ($1, $2, $3)"
            " ON CONFLICT (player_id, currency)"
            " DO UPDATE SET balance = accounts.balance + excluded.balance RETURNING balance",
            (),
        ),
        (
            "rgs_debit",
            "UPDATE accounts SET balance = balance + $3"
            " WHERE player_id = $1 AND currency = $2 AND balance + $3 >= 0 RETURNING balance",
            (),
        ),
        (
            # Read right after taking the round's advisory lock (every writer of a round holds
            # it), so this snapshot already has the last committed version.
            "rgs_round",
            f"SELECT {_ROUND} FROM rounds WHERE aggregator = $1 AND round_id = $2",
            (),
        ),
        (
            "rgs_round_insert",
            f"INSERT INTO rounds ({_ROUND}, aggregator, round_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            (),
        ),
        (
            "rgs_round_update",
            "UPDATE rounds SET player_id=$1, currency=$2, bet_total=$3, win_total=$4,"
            " refund_total=$5, settled_us=$6 WHERE aggregator = $7 AND round_id = $8",
            (),
        ),
        ("rgs_ledger", f"INSERT INTO ledger ({_LEDGER}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)", ()),
        # The chain's single lock: every appender queues on this row until its commit.
        ("rgs_audit_lock", "SELECT id FROM audit_head WHERE id = 1 FOR UPDATE", ()),
        (
            # Sent in the same round trip right after the lock, so its snapshot has the
            # last committed row.  The hash is chain_hash's, computed by the server:
            # sha256(prev || repr((seq, *entry))); Python sends that repr without its
            # "(seq, " prefix ($12), which only the server knows.
            "rgs_audit",
            "WITH last AS (SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1),"
            " h AS (SELECT coalesce((SELECT seq FROM last), 0) + 1 AS seq,"
            f" coalesce((SELECT hash FROM last), '\\x{GENESIS.hex()}'::bytea) AS prev)"
            f" INSERT INTO audit ({_AUDIT}) SELECT h.seq, $1::int8, $2::text, $3::text, $4::text,"
            " $5::bytea, $6::text, $7::bytea, $8::text, $9::text, $10::int8, $11::int8, h.prev,"
            " sha256(h.prev || convert_to('(' || h.seq::text || ', ', 'UTF8') || $12::bytea)"
            " FROM h RETURNING seq",
            (4, 6, 11),
        ),
        (
            "rgs_adjustment",
            "SELECT balance_after FROM adjustments WHERE reference = $1",
            (),
        ),
        (
            "rgs_adjustment_insert",
            "INSERT INTO adjustments (reference, balance_after) VALUES ($1, $2)",
            (),
        ),
        (
            "rgs_meta",
            "INSERT INTO meta (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (),
        ),
    ]
}
_FORMATS: dict[bytes, list[int] | None] = {}
for _name, (_sql, _binary) in PREPARED.items():
    _count = max((int(n) for n in re.findall(rb"\$(\d+)", _sql)), default=0)
    _FORMATS[_name] = [1 if i in _binary else 0 for i in range(_count)] if _binary else None

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_SQLSTATE = pq.DiagnosticField.SQLSTATE
_BUSY: tuple[type[Exception], ...] = (
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.UniqueViolation,
)
_UNSET: Any = object()
_Param = bytes | None


def _key(*parts: str) -> bytes:
    # NUL never occurs in ids (the dialect refuses it), so the join cannot be ambiguous.
    return "\x01".join(parts).encode()


def _t(value: str | None) -> _Param:
    return None if value is None else value.encode()


def _i(value: int | None) -> _Param:
    return None if value is None else str(value).encode()


def _int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def _str(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _bytea(value: bytes | None) -> bytes | None:
    # Text-format bytea is hex: \x0a1b...
    return None if value is None else bytes.fromhex(value[2:].decode())


class PostgresTx:
    """One transaction on one pooled connection; lives only inside ``store.transaction()``.

    Opened by :meth:`begin` (queued, not sent), ended by :meth:`commit` or :meth:`abort`.
    """

    def __init__(
        self, conn: psycopg.Connection[Any], store: PostgresStore, deadline: float | None = None
    ) -> None:
        self.conn = conn
        #: ``time.monotonic()`` past which every wait gives up (the store's decision budget).
        self._deadline = deadline
        self._store = store
        self._pg = conn.pgconn
        self._queued = 0  # statements sent whose results are not read yet
        #: What to do with the result of each queued statement (None: only its status).
        self._handlers: list[Callable[[pq.abc.PGresult], None] | None] = []
        #: Rows read ahead by prefetch_session/prefetch_round (None: known absent).
        self._sessions: dict[str, SessionRow | None] = {}
        self._rounds: dict[tuple[str, str], RoundRow | None] = {}
        self._poll = select.poll()
        self._poll.register(self._pg.socket, select.POLLIN)
        self._guard_ms = store.guard_ms
        self._claimed: dict[tuple[str, str], TxnRow | None] = {}
        self._balances: dict[tuple[str, str], int | None] = {}
        self._blocked: dict[str, bool] = {}

    # -- the wire ---------------------------------------------------------------------------
    def begin(self, timeouts: tuple[bytes, bytes]) -> None:
        pg = self._pg
        pg.enter_pipeline_mode()
        pg.send_query_params(b"BEGIN", None)
        self._queued += 1
        self._handlers.append(None)
        self._send(b"rgs_timeouts", list(timeouts))

    def _send(
        self,
        name: bytes,
        params: Sequence[_Param],
        handler: Callable[[pq.abc.PGresult], None] | None = None,
    ) -> None:
        self._pg.send_query_prepared(name, params, _FORMATS[name])
        self._queued += 1
        self._handlers.append(handler)

    def _read(self, name: bytes, params: Sequence[_Param]) -> pq.abc.PGresult:
        """Send ``name`` after everything queued, wait for all of it; ``name``'s result."""
        self._send(name, params)
        return self._sync()

    def _sync(self) -> pq.abc.PGresult:
        pg = self._pg
        pg.pipeline_sync()
        while pg.flush():
            self._wait(select.POLLOUT)
        error: pq.abc.PGresult | None = None
        last: pq.abc.PGresult | None = None
        handlers = self._handlers
        self._handlers = []
        for i in range(self._queued):
            result = self._next()
            self._queued -= 1
            if result is None:
                raise StorageError("PostgreSQL: a statement answered nothing")
            if result.status not in _OK and error is None:
                error = result
            last = result
            while self._next() is not None:  # the end of this statement's results
                pass
            handler = handlers[i] if i < len(handlers) else None
            if handler is not None and error is None:
                handler(result)
        end = self._next()
        if end is None or end.status != _SYNC:
            raise StorageError("PostgreSQL: the pipeline lost its place")
        if error is not None:
            raise _failure(error)
        assert last is not None
        return last

    def _next(self) -> pq.abc.PGresult | None:
        pg = self._pg
        while pg.is_busy():
            self._wait(select.POLLIN)
            pg.consume_input()
        return pg.get_result()

    def _wait(self, events: int) -> None:
        self._poll.modify(self._pg.socket, events)
        timeout = self._guard_ms
        if self._deadline is not None:
            timeout = max(0, min(timeout, int((self._deadline - time.monotonic()) * 1000)))
        if not self._poll.poll(timeout):
            self.conn.close()  # its state is unknown now: the pool drops it
            raise StoreBusy("the wallet is busy: PostgreSQL did not answer in time")

    def commit(self) -> None:
        self._pg.send_query_params(b"COMMIT", None)
        self._queued += 1
        self._handlers.append(None)
        self._sync()
        self._pg.exit_pipeline_mode()

    def abort(self) -> None:
        """Roll back whatever happened; a connection that cannot be brought back is closed."""
        pg = self._pg
        try:
            if pg.status != pq.ConnStatus.OK:
                return
            if self._queued:
                try:
                    self._sync()
                except (StorageError, StoreBusy):
                    pass
            if pg.status == pq.ConnStatus.OK:
                pg.send_query_params(b"ROLLBACK", None)
                self._queued = 1
                self._handlers = [None]
                self._sync()
                pg.exit_pipeline_mode()
        except Exception:  # noqa: BLE001 - any trouble here: the connection is not reusable
            if not self.conn.closed:
                self.conn.close()

    # -- the protocol -----------------------------------------------------------------------
    def _lock(self, *parts: str) -> None:
        self._send(b"rgs_lock", (_key(*parts),))

    def claim_txn(self, aggregator: str, transaction_id: str) -> TxnRow | None:
        key = (aggregator, transaction_id)
        if key in self._claimed:  # held since the first claim: nobody else changed it
            held = self._claimed[key]
            return None if held is None else held.clone()
        # Lock, then read in a second statement: its snapshot is taken after the wait.
        self._lock("txn", aggregator, transaction_id)
        result = self._read(b"rgs_txn", (aggregator.encode(), transaction_id.encode()))
        if not result.ntuples:
            self._claimed[key] = None
            return None
        v = result.get_value
        row = TxnRow(
            aggregator,
            transaction_id,
            v(0, 0).decode(),  # type: ignore[union-attr]
            _bytea(v(0, 1)),
            _str(v(0, 2)),
            _int(v(0, 3)),
            _bytea(v(0, 4)),
            _int(v(0, 5)),
            v(0, 6).decode(),  # type: ignore[union-attr]
            v(0, 7).decode(),  # type: ignore[union-attr]
            _int(v(0, 8)),
            _str(v(0, 9)),
            v(0, 10) == b"t",
            _str(v(0, 11)),
        )
        self._balances[(row.player_id, row.currency)] = _int(v(0, 12))
        self._claimed[key] = row
        return row.clone()

    def put_txn(self, row: TxnRow, *, new: bool) -> None:
        self._send(
            b"rgs_txn_insert" if new else b"rgs_txn_update",
            (
                row.event.encode(),
                row.fingerprint,
                _t(row.code),
                _i(row.status),
                row.body,
                _i(row.balance_after),
                row.player_id.encode(),
                row.currency.encode(),
                _i(row.amount_minor),
                _t(row.round_id),
                b"t" if row.applied else b"f",
                _t(row.refunded_by),
                row.aggregator.encode(),
                row.transaction_id.encode(),
            ),
        )
        self._claimed[(row.aggregator, row.transaction_id)] = row.clone()

    def _session_of(self, session_id: str, result: pq.abc.PGresult) -> SessionRow | None:
        if not result.ntuples:
            return None
        v = result.get_value
        row = SessionRow(
            session_id,
            v(0, 0).decode(),  # type: ignore[union-attr]
            v(0, 1).decode(),  # type: ignore[union-attr]
            v(0, 2).decode(),  # type: ignore[union-attr]
            int(v(0, 3)),  # type: ignore[arg-type]
            int(v(0, 4)),  # type: ignore[arg-type]
            _int(v(0, 5)),
        )
        self._balances[(row.player_id, row.currency)] = _int(v(0, 6))
        self._blocked[row.player_id] = v(0, 7) == b"t"
        return row

    def _session_row(self, session_id: str) -> SessionRow | None:
        return self._session_of(session_id, self._read(b"rgs_session", (session_id.encode(),)))

    def prefetch_session(self, session_id: str) -> None:
        # Sent now, read with the next statement that waits (the claim): a round trip saved.
        def keep(result: pq.abc.PGresult) -> None:
            self._sessions[session_id] = self._session_of(session_id, result)

        self._send(b"rgs_session", (session_id.encode(),), keep)

    def get_session(self, session_id: str) -> SessionRow | None:
        found = self._sessions.pop(session_id, _UNSET)
        if found is _UNSET:
            found = self._session_row(session_id)
        if found is None:
            # The caller may create it: hold its key so a concurrent first callback waits.
            self._lock("session", session_id)
            found = self._session_row(session_id)
        return found  # type: ignore[no-any-return]

    def put_session(self, row: SessionRow, *, new: bool) -> None:
        if new:
            self._send(
                b"rgs_session_insert",
                (
                    row.session_id.encode(),
                    row.aggregator.encode(),
                    row.player_id.encode(),
                    row.currency.encode(),
                    _i(row.opened_us),
                    _i(row.last_seen_us),
                    _i(row.closed_us),
                ),
            )
        else:
            self._send(
                b"rgs_session_touch",
                (_i(row.last_seen_us), _i(row.closed_us), row.session_id.encode()),
            )

    def player_blocked(self, player_id: str) -> bool:
        known = self._blocked.get(player_id)
        if known is not None:
            return known
        result = self._read(b"rgs_blocked", (player_id.encode(),))
        return bool(result.ntuples) and result.get_value(0, 0) == b"t"

    def set_player_blocked(self, player_id: str, blocked: bool) -> None:
        self._blocked.pop(player_id, None)
        self._send(b"rgs_block", (player_id.encode(), b"t" if blocked else b"f"))

    def get_balance(self, player_id: str, currency: str) -> int | None:
        # Read with the session or the idempotency record (READ COMMITTED, unlocked either
        # way: the debit itself is conditional), or after our own move of the account.
        known = self._balances.get((player_id, currency), _UNSET)
        if known is not _UNSET:
            return known  # type: ignore[no-any-return]
        result = self._read(b"rgs_balance", (player_id.encode(), currency.encode()))
        return int(result.get_value(0, 0)) if result.ntuples else None  # type: ignore[arg-type]

    def move(self, player_id: str, currency: str, delta: int) -> int | None:
        name = b"rgs_credit" if delta >= 0 else b"rgs_debit"
        result = self._read(name, (player_id.encode(), currency.encode(), str(delta).encode()))
        if not result.ntuples:
            return None
        after = int(result.get_value(0, 0))  # type: ignore[arg-type]
        self._balances[(player_id, currency)] = after  # the row is ours until commit
        return after

    def _round_of(self, aggregator: str, round_id: str, result: pq.abc.PGresult) -> RoundRow | None:
        if not result.ntuples:
            return None
        v = result.get_value
        return RoundRow(
            aggregator,
            round_id,
            v(0, 0).decode(),  # type: ignore[union-attr]
            v(0, 1).decode(),  # type: ignore[union-attr]
            int(v(0, 2)),  # type: ignore[arg-type]
            int(v(0, 3)),  # type: ignore[arg-type]
            int(v(0, 4)),  # type: ignore[arg-type]
            _int(v(0, 5)),
        )

    def prefetch_round(self, aggregator: str, round_id: str) -> None:
        # The lock and the read are queued behind the claim (the order every writer takes).
        key = (aggregator, round_id)

        def keep(result: pq.abc.PGresult) -> None:
            self._rounds[key] = self._round_of(aggregator, round_id, result)

        self._lock("round", aggregator, round_id)
        self._send(b"rgs_round", (aggregator.encode(), round_id.encode()), keep)

    def get_round(self, aggregator: str, round_id: str) -> RoundRow | None:
        found = self._rounds.pop((aggregator, round_id), _UNSET)
        if found is not _UNSET:  # read after its lock, which is held to the commit
            return found  # type: ignore[no-any-return]
        # Every writer of a round takes this lock first, so the read after it is current.
        self._lock("round", aggregator, round_id)
        result = self._read(b"rgs_round", (aggregator.encode(), round_id.encode()))
        return self._round_of(aggregator, round_id, result)

    def put_round(self, row: RoundRow, *, new: bool) -> None:
        self._send(
            b"rgs_round_insert" if new else b"rgs_round_update",
            (
                row.player_id.encode(),
                row.currency.encode(),
                str(row.bet_total).encode(),
                str(row.win_total).encode(),
                str(row.refund_total).encode(),
                _i(row.settled_us),
                row.aggregator.encode(),
                row.round_id.encode(),
            ),
        )

    def add_ledger(self, entry: LedgerEntry) -> None:
        self._send(
            b"rgs_ledger",
            (
                str(entry.at_us).encode(),
                entry.aggregator.encode(),
                entry.transaction_id.encode(),
                entry.kind.encode(),
                entry.player_id.encode(),
                entry.currency.encode(),
                str(entry.amount_minor).encode(),
                str(entry.balance_after).encode(),
            ),
        )

    def append_audit(self, entry: AuditEntry) -> int:
        self.chain_audit(entry)
        return int(self._sync().get_value(0, 0))  # type: ignore[arg-type]

    def chain_audit(self, entry: AuditEntry) -> None:
        # Queued behind the lock of the single audit_head row and read with the commit: the
        # lock every writer waits for is held for the server's work only, no round trip.
        # repr((seq, *entry)) is "(" + str(seq) + ", " + repr(tuple(entry))[1:]: see the SQL.
        rest = repr(tuple(entry))[1:].encode("utf-8", "surrogatepass")
        self._send(b"rgs_audit_lock", ())
        self._send(
            b"rgs_audit",
            (
                str(entry.at_us).encode(),
                entry.aggregator.encode(),
                entry.kind.encode(),
                entry.headers.encode(),
                entry.request,
                entry.decision.encode(),
                entry.response,
                _t(entry.player_id),
                _t(entry.currency),
                _i(entry.amount_minor),
                _i(entry.balance_after),
                rest,
            ),
        )

    def adjustment_done(self, reference: str) -> int | None:
        # Held to commit: a concurrent adjustment with this reference waits, then sees ours.
        self._lock("adjustment", reference)
        result = self._read(b"rgs_adjustment", (reference.encode(),))
        return int(result.get_value(0, 0)) if result.ntuples else None  # type: ignore[arg-type]

    def record_adjustment(self, reference: str, balance_after: int) -> None:
        self._send(b"rgs_adjustment_insert", (reference.encode(), str(balance_after).encode()))

    def set_meta(self, key: str, value: str) -> None:
        self._send(b"rgs_meta", (key.encode(), value.encode()))


def _failure(result: pq.abc.PGresult) -> Exception:
    """A failed statement as the store's own error: busy (retry) or failed."""
    message = (result.error_message or b"").decode("utf-8", "replace").strip()
    first = message.splitlines()[0] if message else "a statement failed"
    for prefix in ("ERROR:  ", "FATAL:  "):
        first = first.removeprefix(prefix)
    state = result.error_field(_SQLSTATE)
    try:
        kind = pg_errors.lookup(state.decode()) if state is not None else None
    except KeyError:
        kind = None
    if kind is not None and issubclass(kind, _BUSY):
        return StoreBusy(f"the wallet is busy: {first}")
    return StorageError(f"PostgreSQL: {first}")
