"""The engine: one raw callback in, one decision and the exact HTTP answer out.

``WalletCore.handle`` is the single code path shared by the server and replay.
Order of checks (each a rule of PROTOCOL.md section 1, see :mod:`.policies`):

1. size limit, aggregator, signature, parse (no storage touched, but audited);
2. idempotency on ``(aggregator, transaction_id)``: an exact repeat returns the
   stored first answer, a changed one gets ``DUPLICATE_MISMATCH``;
3. session ownership, currency, open/expired state, blocked player;
4. the event itself: conditional debit, credit, refund (or tombstone), settle.

Everything from step 2 on runs in one store transaction together with the
idempotency row, ledger entry, round state and audit row.  Any storage failure
rolls it all back and answers ``RETRY_LATER``; the core never raises.
A row read from the store is the engine's to change until it is put back; after
``put_*`` it is not touched again (the replay buffer keeps the object as given).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import NamedTuple

from .audit import decision_json, headers_json
from .clock import timestamp_us
from .codes import HTTP_STATUS, Code
from .config import AggregatorConfig, WalletConfig
from .dialects import Dialect, GenericDialect, ParseError
from .errors import StorageError
from .model import Callback, Decision, Event, HttpResponse, Mode, Outcome
from .money import INT64_MAX
from .store.base import AuditEntry, LedgerEntry, RoundRow, SessionRow, Store, StoreTx, TxnRow

__all__ = ["Result", "WalletCore", "fingerprint"]

log = logging.getLogger(__name__)
_FALLBACK_DIALECT = GenericDialect()
#: ``Event.X.value`` is a property lookup through the enum machinery; a dict is cheaper.
_EVENT_NAME: dict[Event, str] = {event: event.value for event in Event}
_blake2b = hashlib.blake2b


class Result(NamedTuple):
    decision: Decision
    response: HttpResponse


def fingerprint(callback: Callback) -> bytes:
    """A digest of everything that identifies a callback's content (not its timestamp)."""
    return _blake2b(repr(callback.fingerprint_fields()).encode(), digest_size=16).digest()


class _Rejected(Exception):
    """Internal control flow: a rule refused the callback (never escapes the engine)."""

    def __init__(self, code: Code, message: str) -> None:
        self.code = code
        self.message = message


class WalletCore:
    """Decides callbacks against a :class:`Store`; see the module docstring for the order."""

    def __init__(
        self,
        store: Store,
        config: WalletConfig,
        *,
        mode: Mode = Mode.SHADOW,
        check_timestamps: bool = False,
    ) -> None:
        self.store = store
        self.config = config
        self.mode = mode
        self.policies = config.policies
        self._window_us = (
            config.timestamp_window_s * 1_000_000
            if check_timestamps and config.timestamp_window_s
            else None
        )

    # -- the one entry point ----------------------------------------------------------------
    def handle(
        self, aggregator: str, headers: Mapping[str, str], body: bytes, now_us: int
    ) -> Result:
        """Decide one callback. ``headers`` keys are lower-case; ``now_us`` is the clock."""
        agg = self.config.aggregators.get(aggregator)
        dialect = agg.dialect if agg is not None else _FALLBACK_DIALECT
        try:
            early = self._authenticate(agg, headers, body, now_us)
            with self.store.transaction() as tx:
                if isinstance(early, Decision):
                    return self._finish(tx, dialect, aggregator, headers, body, now_us, early)
                assert agg is not None
                return self._decide(tx, agg, early, headers, body, now_us)
        except Exception as exc:  # storage down, lock timeout, or a bug: never a 500
            if not _is_storage_error(exc):
                log.exception("wallet core failed on a callback; answering RETRY_LATER")
            decision = Decision(Outcome.REJECTED, Code.RETRY_LATER, 503, message=_short(exc))
            return Result(decision, dialect.render(decision, self.config.currencies))

    def _authenticate(
        self, agg: AggregatorConfig | None, headers: Mapping[str, str], body: bytes, now_us: int
    ) -> Callback | Decision:
        if len(body) > self.config.body_limit:
            return _early(Code.BAD_REQUEST, f"body exceeds {self.config.body_limit} bytes", 413)
        if agg is None:
            return _early(Code.INVALID_SIGNATURE, "unknown aggregator")
        if agg.secret is None or not agg.dialect.verify(headers, body, agg.secret):
            return _early(Code.INVALID_SIGNATURE, "missing or wrong signature")
        try:
            callback = agg.dialect.parse(body, self.config.currencies)
        except ParseError as exc:
            return _early(Code.BAD_REQUEST, str(exc))
        if self._window_us is not None and _stale(callback.timestamp, now_us, self._window_us):
            return _early(Code.INVALID_SIGNATURE, "timestamp outside the accepted window")
        return callback

    # -- decisions ----------------------------------------------------------------------------
    def _decide(
        self,
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        headers: Mapping[str, str],
        body: bytes,
        now_us: int,
    ) -> Result:
        txn: TxnRow | None = None
        digest = b""
        if cb.transaction_id is not None:
            digest = fingerprint(cb)
            # Hints for a networked store: the session and round reads go with the claim.
            # Not a refund's round: it locks the bet it names first (see below).
            tx.prefetch_session(cb.session_id)
            if cb.round_id is not None and cb.event is not Event.REFUND:
                tx.prefetch_round(agg.name, cb.round_id)
            txn = tx.claim_txn(agg.name, cb.transaction_id)
            if txn is not None and txn.fingerprint is not None:
                return self._repeat(tx, agg, cb, txn, digest, headers, body, now_us)
            if cb.event is Event.REFUND and cb.ref_transaction_id is not None:
                # Hold the bet's key before any round or account, the order the bet itself
                # takes them: a refund racing its bet then waits instead of deadlocking.
                tx.claim_txn(agg.name, cb.ref_transaction_id)
        flags: list[str] = []
        balance: int | None = None
        before: int | None = None
        session: SessionRow | None = None
        try:
            if txn is not None and cb.event is not Event.BET:
                raise _Rejected(Code.DUPLICATE_MISMATCH, "transaction_id names a refunded bet")
            session = tx.get_session(cb.session_id)
            session = self._session(tx, agg, cb, session, now_us, flags)
            balance = tx.get_balance(cb.player_id, cb.currency) or 0
            before = balance
            balance = self._apply(tx, agg, cb, txn, balance, now_us, flags)
            code, message = Code.OK, ""
        except _Rejected as rejected:
            code, message = rejected.code, rejected.message
            if balance is None and session is not None and session.player_id == cb.player_id:
                balance = tx.get_balance(session.player_id, session.currency) or 0
            before = balance
        event = _EVENT_NAME[cb.event]
        decision = Decision(  # positional (cheaper), in field order: see model.Decision
            Outcome.APPLIED if code is Code.OK else Outcome.REJECTED,
            code,
            HTTP_STATUS[code],
            event,
            cb.transaction_id,
            cb.player_id,
            cb.session_id,
            cb.round_id,
            session.currency if session is not None else None,
            cb.amount_minor,
            before,
            balance,
            message,
            tuple(flags),
            cb.ref_transaction_id,
        )
        if cb.transaction_id is None:  # nothing to remember: _finish renders what is sent
            return self._finish(tx, agg.dialect, agg.name, headers, body, now_us, decision)
        # The live answer is remembered for repeats in both modes; shadow mode also sends
        # the mock, which the dialect builds only once when the two coincide.
        mock: HttpResponse | None = None
        if self.mode is Mode.SHADOW:
            live, mock = agg.dialect.render_both(decision, self.config.currencies)
        else:
            live = agg.dialect.render(decision, self.config.currencies)
        tx.put_txn(
            TxnRow(
                agg.name,
                cb.transaction_id,
                event,
                digest,
                code._value_,  # the plain str: sqlite3 binds a str subclass on a slow path
                live.status,
                live.body,
                balance,
                cb.player_id,
                cb.currency,
                cb.amount_minor,
                cb.round_id,
                code is Code.OK and "no_money_moved" not in flags,
                txn.refunded_by if txn is not None else None,
            ),
            new=txn is None,
        )
        return self._finish(tx, agg.dialect, agg.name, headers, body, now_us, decision, live, mock)

    def _repeat(
        self,
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        txn: TxnRow,
        digest: bytes,
        headers: Mapping[str, str],
        body: bytes,
        now_us: int,
    ) -> Result:
        current = tx.get_balance(txn.player_id, txn.currency) or 0
        code = Code.DUPLICATE_MISMATCH
        seen = Decision(
            Outcome.REJECTED,
            code,
            HTTP_STATUS[code],
            event=_EVENT_NAME[cb.event],
            transaction_id=cb.transaction_id,
            player_id=cb.player_id,
            session_id=cb.session_id,
            round_id=cb.round_id,
            currency=txn.currency,
            amount_minor=cb.amount_minor,
            balance_before=current,
            balance_after=current,
        )
        if txn.fingerprint != digest:
            decision = seen._replace(message="transaction_id seen before with different content")
            return self._finish(tx, agg.dialect, agg.name, headers, body, now_us, decision)
        assert txn.code is not None and txn.status is not None and txn.body is not None
        first = seen._replace(outcome=Outcome.REPEAT, code=Code(txn.code), http_status=txn.status)
        stored = HttpResponse(txn.status, txn.body)
        if self.mode is Mode.SHADOW:
            mock = agg.dialect.render_mock(
                first._replace(balance_after=txn.balance_after), self.config.currencies
            )
            return self._finish(
                tx, agg.dialect, agg.name, headers, body, now_us, first, stored, mock
            )
        return self._finish(tx, agg.dialect, agg.name, headers, body, now_us, first, stored)

    def _session(
        self,
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        session: SessionRow | None,
        now_us: int,
        flags: list[str],
    ) -> SessionRow:
        """The open session for ``cb`` (opened here in shadow mode), or raise _Rejected."""
        if session is None:
            if self.mode is Mode.SHADOW and self.policies.shadow_opens_unknown_sessions:
                session = SessionRow(
                    cb.session_id, agg.name, cb.player_id, cb.currency, now_us, now_us
                )
                tx.put_session(session, new=True)
                flags.append("session_opened")
                return session
            raise _Rejected(Code.SESSION_NOT_FOUND, "unknown session")
        if session.player_id != cb.player_id or session.aggregator != agg.name:
            raise _Rejected(Code.SESSION_NOT_FOUND, "the session belongs to another player")
        if session.currency != cb.currency:
            raise _Rejected(Code.CURRENCY_MISMATCH, f"the session's currency is {session.currency}")
        timeout = self.config.session_timeout_us
        if session.closed_us is None and now_us - session.last_seen_us > timeout:
            session.closed_us = session.last_seen_us + timeout
            tx.put_session(session, new=False)
        if session.closed_us is not None:
            credit = cb.event not in (Event.BALANCE, Event.BET)
            if not (credit and self.policies.credits_on_closed_sessions):
                raise _Rejected(Code.SESSION_NOT_FOUND, "the session is closed or expired")
            flags.append("closed_session")
        elif now_us > session.last_seen_us:
            session.last_seen_us = now_us
            tx.put_session(session, new=False)
        return session

    def _apply(
        self,
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        tombstone: TxnRow | None,
        balance: int,
        now_us: int,
        flags: list[str],
    ) -> int:
        """Apply one authenticated callback; returns the balance after, or raises _Rejected."""
        event = cb.event
        if event is Event.BALANCE or event is Event.BET:
            if self.policies.refuse_blocked_players and tx.player_blocked(cb.player_id):
                raise _Rejected(Code.PLAYER_BLOCKED, "the player is blocked")
            if event is Event.BALANCE:
                return balance
        assert cb.round_id is not None and cb.transaction_id is not None
        round_row = tx.get_round(agg.name, cb.round_id)
        new_round = round_row is None
        if round_row is None:
            round_row = RoundRow(agg.name, cb.round_id, cb.player_id, cb.currency)
        settled = round_row.settled_us is not None
        if event is Event.BET:
            amount = _amount(cb)
            if tombstone is not None:
                raise _Rejected(Code.ALREADY_REFUNDED, "the bet was refunded before it arrived")
            if settled and self.policies.refuse_bets_after_settle:
                raise _Rejected(Code.ROUND_CLOSED, "the round is already settled")
            after = tx.move(cb.player_id, cb.currency, -amount)
            if after is None:
                raise _Rejected(Code.INSUFFICIENT_FUNDS, "the balance does not cover the bet")
            round_row.bet_total += amount
            self._ledger(tx, agg, cb, "bet", -amount, after, now_us)
        elif event is Event.WIN:
            amount = _amount(cb)
            self._late(settled, flags)
            after = self._credit(tx, agg, cb, "win", amount, balance, now_us)
            round_row.win_total += amount
        elif event is Event.REFUND:
            after, amount = self._refund(tx, agg, cb, balance, settled, now_us, flags)
            round_row.refund_total += amount
        else:
            after = balance
            self._settle(cb, round_row, now_us, flags)
        tx.put_round(round_row, new=new_round)
        return after

    def _refund(
        self,
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        balance: int,
        settled: bool,
        now_us: int,
        flags: list[str],
    ) -> tuple[int, int]:
        ref = cb.ref_transaction_id
        assert ref is not None and cb.transaction_id is not None
        bet = tx.claim_txn(agg.name, ref)
        if bet is None:
            if not self.policies.tombstone_unknown_refunds:
                raise _Rejected(Code.BAD_REQUEST, "ref_transaction_id names no known bet")
            tx.put_txn(
                TxnRow(
                    agg.name,
                    ref,
                    _EVENT_NAME[Event.BET],
                    None,
                    None,
                    None,
                    None,
                    None,
                    cb.player_id,
                    cb.currency,
                    cb.amount_minor,
                    cb.round_id,
                    False,
                    cb.transaction_id,
                ),
                new=True,
            )
            flags.extend(("tombstone", "no_money_moved"))
            return balance, 0
        if bet.event != Event.BET:
            raise _Rejected(Code.BAD_REQUEST, "ref_transaction_id does not name a bet")
        if bet.refunded_by is not None:
            flags.extend(("already_refunded", "no_money_moved"))
            return balance, 0
        if self.policies.refund_must_match_bet and (
            bet.player_id != cb.player_id
            or bet.currency != cb.currency
            or bet.amount_minor != cb.amount_minor
        ):
            raise _Rejected(Code.BAD_REQUEST, "the refund does not match the bet it names")
        bet.refunded_by = cb.transaction_id
        if not bet.applied:
            tx.put_txn(bet, new=False)
            flags.extend(("bet_not_applied", "no_money_moved"))
            return balance, 0
        self._late(settled, flags)
        amount = bet.amount_minor or 0
        after = self._credit(tx, agg, cb, "refund", amount, balance, now_us)
        tx.put_txn(bet, new=False)
        return after, amount

    def _settle(self, cb: Callback, round_row: RoundRow, now_us: int, flags: list[str]) -> None:
        if round_row.settled_us is None:
            round_row.settled_us = now_us
        else:
            flags.append("already_settled")
        if not self.policies.check_settle_totals:
            return
        net_bet = round_row.bet_total - round_row.refund_total
        if cb.total_bet_minor is not None and cb.total_bet_minor != net_bet:
            flags.append(f"total_bet_mismatch:{cb.total_bet_minor}!={net_bet}")
        if cb.total_win_minor is not None and cb.total_win_minor != round_row.win_total:
            flags.append(f"total_win_mismatch:{cb.total_win_minor}!={round_row.win_total}")

    def _late(self, settled: bool, flags: list[str]) -> None:
        if settled:
            if not self.policies.credits_after_settle:
                raise _Rejected(Code.ROUND_CLOSED, "the round is already settled")
            flags.append("late")

    def _credit(
        self,
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        kind: str,
        amount: int,
        balance: int,
        now_us: int,
    ) -> int:
        if amount == 0:
            return balance
        if balance + amount > INT64_MAX:
            raise _Rejected(Code.BAD_REQUEST, "the balance would exceed 64 bits")
        after = tx.move(cb.player_id, cb.currency, amount)
        assert after is not None
        self._ledger(tx, agg, cb, kind, amount, after, now_us)
        return after

    @staticmethod
    def _ledger(
        tx: StoreTx,
        agg: AggregatorConfig,
        cb: Callback,
        kind: str,
        delta: int,
        after: int,
        now_us: int,
    ) -> None:
        assert cb.transaction_id is not None
        tx.add_ledger(
            LedgerEntry(
                now_us, agg.name, cb.transaction_id, kind, cb.player_id, cb.currency, delta, after
            )
        )

    # -- answer and audit -------------------------------------------------------------------
    def _finish(
        self,
        tx: StoreTx,
        dialect: Dialect,
        aggregator: str,
        headers: Mapping[str, str],
        body: bytes,
        now_us: int,
        decision: Decision,
        live: HttpResponse | None = None,
        mock: HttpResponse | None = None,
    ) -> Result:
        """Chain the audit row of ``decision``; render whichever answer is sent if not given."""
        mode = self.mode
        if mode is Mode.LIVE:
            sent = live if live is not None else dialect.render(decision, self.config.currencies)
        else:
            sent = (
                mock if mock is not None else dialect.render_mock(decision, self.config.currencies)
            )
        oversized = len(body) > self.config.body_limit
        tx.chain_audit(
            AuditEntry(  # positional (cheaper), in field order: see store.base.AuditEntry
                now_us,
                aggregator,
                "callback",
                headers_json(headers) if not oversized else "{}",
                body if not oversized else b"",
                decision_json(
                    decision.outcome,
                    decision.code,
                    decision.http_status,
                    decision.event,
                    decision.transaction_id,
                    mode,
                    decision.flags,
                ),
                sent.body,
                decision.player_id,
                decision.currency,
                decision.amount_minor,
                decision.balance_after,
            )
        )
        return Result(decision, sent)


def _early(code: Code, message: str, status: int | None = None) -> Decision:
    return Decision(Outcome.REJECTED, code, status or HTTP_STATUS[code], message=message)


def _amount(cb: Callback) -> int:
    assert cb.amount_minor is not None
    return cb.amount_minor


def _stale(timestamp: str, now_us: int, window_us: int) -> bool:
    return now_us - timestamp_us(timestamp) > window_us


def _is_storage_error(exc: Exception) -> bool:
    return isinstance(exc, StorageError)


def _short(exc: Exception) -> str:
    if isinstance(exc, StorageError):
        return "the wallet is busy, retry later"
    return "internal error, nothing was written; retry later"
