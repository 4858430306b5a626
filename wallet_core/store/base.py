"""The store interface: what the engine needs from durable storage, and nothing more.

One callback runs inside one :meth:`Store.transaction`; every write made through
the :class:`StoreTx` commits together or not at all.  Implementations: SQLite
(the embedded default, :mod:`.sqlite`) and PostgreSQL (:mod:`.postgres`).  A
store raises :class:`~wallet_core.errors.StoreBusy` when it could not get its
locks in bounded time, and any other :class:`~wallet_core.errors.StorageError`
when it failed; in both cases nothing was written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "AuditEntry",
    "AuditRow",
    "HistoryRow",
    "HistoryStore",
    "LedgerEntry",
    "LocalTx",
    "RoundRow",
    "SessionRow",
    "Store",
    "StoreTx",
    "TxnRow",
]

SCHEMA_VERSION = 1


@dataclass(slots=True)
class SessionRow:
    session_id: str
    aggregator: str
    player_id: str
    currency: str
    opened_us: int
    last_seen_us: int
    closed_us: int | None = None

    def clone(self) -> SessionRow:
        return SessionRow(
            self.session_id,
            self.aggregator,
            self.player_id,
            self.currency,
            self.opened_us,
            self.last_seen_us,
            self.closed_us,
        )


@dataclass(slots=True)
class TxnRow:
    """The idempotency record of one ``(aggregator, transaction_id)``.

    ``fingerprint`` is None for a tombstone (a refund named this bet before it
    arrived).  ``status``/``body`` are the first answer as the live dialect
    renders it; ``balance_after`` lets shadow mode re-render its mock exactly.
    """

    aggregator: str
    transaction_id: str
    event: str
    fingerprint: bytes | None
    code: str | None
    status: int | None
    body: bytes | None
    balance_after: int | None
    player_id: str
    currency: str
    amount_minor: int | None
    round_id: str | None
    applied: bool
    refunded_by: str | None = None

    def clone(self) -> TxnRow:
        return TxnRow(
            self.aggregator,
            self.transaction_id,
            self.event,
            self.fingerprint,
            self.code,
            self.status,
            self.body,
            self.balance_after,
            self.player_id,
            self.currency,
            self.amount_minor,
            self.round_id,
            self.applied,
            self.refunded_by,
        )


@dataclass(slots=True)
class RoundRow:
    aggregator: str
    round_id: str
    player_id: str
    currency: str
    bet_total: int = 0
    win_total: int = 0
    refund_total: int = 0
    settled_us: int | None = None

    def clone(self) -> RoundRow:
        return RoundRow(
            self.aggregator,
            self.round_id,
            self.player_id,
            self.currency,
            self.bet_total,
            self.win_total,
            self.refund_total,
            self.settled_us,
        )


class LedgerEntry(NamedTuple):
    at_us: int
    aggregator: str
    transaction_id: str
    kind: str
    player_id: str
    currency: str
    amount_minor: int
    balance_after: int


class AuditEntry(NamedTuple):
    """One callback (or operator action) as it will be chained into the audit log."""

    at_us: int
    aggregator: str
    kind: str
    headers: str
    request: bytes
    decision: str
    response: bytes
    player_id: str | None
    currency: str | None
    amount_minor: int | None
    balance_after: int | None


class AuditRow(NamedTuple):
    seq: int
    entry: AuditEntry
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One decided callback as the store remembers it: what ``reconcile`` compares.

    Built from the audit row of the callback (time, decision, amount, balance)
    and the idempotency record of its transaction (round, and the bet a refund
    reversed), so reconciliation needs no capture files.
    """

    seq: int
    at_us: int
    aggregator: str
    event: str | None
    transaction_id: str | None
    outcome: str
    code: str
    player_id: str | None
    currency: str | None
    amount_minor: int | None
    balance_after: int | None
    round_id: str | None
    ref_transaction_id: str | None
    #: The decision's flags as a JSON list (``["late", "no_money_moved"]``).
    flags: str


class StoreTx(Protocol):
    def claim_txn(self, aggregator: str, transaction_id: str) -> TxnRow | None:
        """The record for this id, held for the rest of the transaction; None when new."""
        ...

    def put_txn(self, row: TxnRow, *, new: bool) -> None: ...

    def get_session(self, session_id: str) -> SessionRow | None: ...

    def prefetch_session(self, session_id: str) -> None:
        """A hint: :meth:`get_session` of ``session_id`` follows. A networked store may send
        the read now, to arrive with the next read it waits for; others do nothing."""
        ...

    def prefetch_round(self, aggregator: str, round_id: str) -> None:
        """A hint, as :meth:`prefetch_session`, for :meth:`get_round`; called right before
        the callback's own :meth:`claim_txn`, so a store that locks the round on reading it
        takes the locks in the order every writer does (transaction, then round)."""
        ...

    def put_session(self, row: SessionRow, *, new: bool) -> None: ...

    def player_blocked(self, player_id: str) -> bool: ...

    def get_balance(self, player_id: str, currency: str) -> int | None:
        """The balance, or None when the account does not exist yet (a zero balance)."""
        ...

    def move(self, player_id: str, currency: str, delta: int) -> int | None:
        """Add ``delta`` (negative for a debit) unless the balance would go below zero.

        Returns the new balance, or None when refused.  Creates the account when missing.
        """
        ...

    def get_round(self, aggregator: str, round_id: str) -> RoundRow | None: ...

    def put_round(self, row: RoundRow, *, new: bool) -> None: ...

    def add_ledger(self, entry: LedgerEntry) -> None: ...

    def append_audit(self, entry: AuditEntry) -> int:
        """Chain ``entry`` onto the audit log; returns its sequence number."""
        ...

    def chain_audit(self, entry: AuditEntry) -> None:
        """:meth:`append_audit` without waiting for the sequence number.

        A store may send it together with the commit: PostgreSQL then holds the audit
        head's lock (which every writer queues on) for no client round trip at all.
        A failure surfaces at the commit instead, and the transaction is rolled back.
        """
        ...

    def set_player_blocked(self, player_id: str, blocked: bool) -> None: ...

    def adjustment_done(self, reference: str) -> int | None:
        """The balance answered for an earlier adjustment with this reference, if any."""
        ...

    def record_adjustment(self, reference: str, balance_after: int) -> None: ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[StoreTx]:
        """Everything written inside commits together; an exception rolls it all back."""
        ...

    def get_mode(self) -> str | None: ...

    def set_mode(self, mode: str) -> None: ...

    def audit_rows(self) -> Iterator[AuditRow]:
        """Every audit row in sequence order, as stored (for verification)."""
        ...

    def balances(self) -> dict[tuple[str, str], int]: ...

    def ledger_sums(self) -> dict[tuple[str, str], int]: ...

    def flush(self) -> None:
        """Make grouped commits durable (a no-op when every transaction commits itself)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class HistoryStore(Store, Protocol):
    """A store that can replay its decided callbacks for ``rgs-shadow reconcile``.

    Kept apart from :class:`Store` until every store implements it (SQLite does;
    PostgreSQL must add the same read over ``audit`` joined with ``txns``).
    """

    def txn_history(self, since_us: int | None, until_us: int | None) -> Iterator[HistoryRow]:
        """Every callback decided in ``[since_us, until_us)`` (None: unbounded), in audit order."""
        ...


class LocalTx:
    """The hints and the deferred audit append of a store that waits on no wire (SQLite)."""

    def append_audit(self, entry: AuditEntry) -> int:
        raise NotImplementedError

    def prefetch_session(self, session_id: str) -> None:
        pass  # reads are local: nothing to send ahead

    def prefetch_round(self, aggregator: str, round_id: str) -> None:
        pass

    def chain_audit(self, entry: AuditEntry) -> None:
        self.append_audit(entry)
