"""Random sequences of all five events against a plain integer model (must show 2).

After every step: no negative balance; every balance equals its ledger entries;
no transaction_id moved money twice; a repeat answers byte-identical to the
first answer; the audit chain verifies.  Runs on every store kind of
``store_url`` (SQLite always, PostgreSQL when configured).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.audit import verify_chain
from wallet_core.store import Store, open_store
from wallet_core.testing import CallbackFactory

T0 = 1_790_000_000 * 1_000_000
MINUTE = 60 * 1_000_000
TIMEOUT = 30 * MINUTE
SESSIONS = {"s1": ("p1", "EUR"), "s2": ("p2", "EUR"), "s3": ("p1", "USD")}
ROUNDS = ["r1", "r2", "r3", "r4"]
OPENING = {("p1", "EUR"): 10_000, ("p2", "EUR"): 500, ("p1", "USD"): 0}


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


@dataclass
class _Session:
    player: str
    currency: str
    last_seen: int
    closed: bool = False


@dataclass
class _Bet:
    session: str
    amount: int
    round_id: str
    applied: bool
    refunded: bool = False


@dataclass
class _Model:
    balances: dict[tuple[str, str], int] = field(default_factory=lambda: dict(OPENING))
    sessions: dict[str, _Session] = field(default_factory=dict)
    bets: dict[str, _Bet] = field(default_factory=dict)
    tombstones: set[str] = field(default_factory=set)
    settled: set[str] = field(default_factory=set)


class WalletMachine(RuleBasedStateMachine):
    store_opener: object = None

    def __init__(self) -> None:
        super().__init__()
        opener = type(self).store_opener
        assert callable(opener)
        self.store: Store = opener()
        self.config = WalletConfig.single()
        self.core = WalletCore(self.store, self.config, mode=Mode.LIVE)
        self.operator = OperatorApi(self.store, self.config)
        self.factory = CallbackFactory()
        self.model = _Model()
        self.now = T0
        self.ids = itertools.count(1)
        #: transaction_id -> (fields without timestamp, first response bytes, status)
        self.sent: dict[str, tuple[dict[str, str], bytes, int]] = {}

    @initialize()
    def open_wallet(self) -> None:
        for (player, currency), minor in OPENING.items():
            assert self.operator.adjust(f"open-{player}-{currency}", player, currency, minor, T0).ok
        for sid, (player, currency) in SESSIONS.items():
            assert self.operator.open_session(sid, player, currency, "default", T0).ok
            self.model.sessions[sid] = _Session(player, currency, T0)

    def teardown(self) -> None:
        self.store.close()

    # -- helpers ----------------------------------------------------------------------------
    def _send(self, fields: dict[str, str], timestamp: str | None = None) -> tuple[str, bytes, int]:
        self.now += 1_000_000
        factory = self.factory if timestamp is None else CallbackFactory(timestamp=timestamp)
        event = fields["event"]
        rest = {k: v for k, v in fields.items() if k != "event"}
        headers, body = factory.make(event, **rest)
        result = self.core.handle("default", headers, body, self.now)
        return result.decision.code.value, result.response.body, result.response.status

    def _session_gate(self, sid: str, event: str) -> str | None:
        """The model's session rule: the code a closed session gets, else None."""
        sess = self.model.sessions[sid]
        if not sess.closed and self.now + 1_000_000 - sess.last_seen > TIMEOUT:
            sess.closed = True
        if sess.closed:
            return "SESSION_NOT_FOUND" if event in ("bet", "balance") else None
        sess.last_seen = self.now + 1_000_000
        return None

    def _new(self, fields: dict[str, str], expected: str) -> None:
        code, body, status = self._send(fields)
        assert code == expected, (fields, code, expected, body)
        txid = fields.get("transaction_id")
        if txid is not None:
            self.sent[txid] = (fields, body, status)

    def _base(self, sid: str) -> dict[str, str]:
        player, currency = SESSIONS[sid]
        return {"session_id": sid, "player_id": player, "currency": currency}

    # -- rules ------------------------------------------------------------------------------
    @rule(
        sid=st.sampled_from(sorted(SESSIONS)),
        amount=st.integers(1, 6_000),
        round_id=st.sampled_from(ROUNDS),
    )
    def bet(self, sid: str, amount: int, round_id: str) -> None:
        txid = f"b{next(self.ids)}"
        fields = {
            **self._base(sid),
            "event": "bet",
            "transaction_id": txid,
            "amount": _money(amount),
            "round_id": round_id,
        }
        account = SESSIONS[sid]
        expected = self._session_gate(sid, "bet")
        if expected is None:
            if round_id in self.model.settled:
                expected = "ROUND_CLOSED"
            elif self.model.balances[account] < amount:
                expected = "INSUFFICIENT_FUNDS"
            else:
                expected = "OK"
                self.model.balances[account] -= amount
        self.model.bets[txid] = _Bet(sid, amount, round_id, expected == "OK")
        self._new(fields, expected)

    @rule(
        sid=st.sampled_from(sorted(SESSIONS)),
        amount=st.integers(0, 9_000),
        round_id=st.sampled_from(ROUNDS),
    )
    def win(self, sid: str, amount: int, round_id: str) -> None:
        fields = {
            **self._base(sid),
            "event": "win",
            "transaction_id": f"w{next(self.ids)}",
            "amount": _money(amount),
            "round_id": round_id,
        }
        self._session_gate(sid, "win")
        self.model.balances[SESSIONS[sid]] += amount
        self._new(fields, "OK")

    @precondition(lambda self: bool(self.model.bets))
    @rule(data=st.data())
    def refund_known_bet(self, data: st.DataObject) -> None:
        bet_id = data.draw(st.sampled_from(sorted(self.model.bets)))
        bet = self.model.bets[bet_id]
        fields = {
            **self._base(bet.session),
            "event": "refund",
            "transaction_id": f"f{next(self.ids)}",
            "amount": _money(bet.amount),
            "round_id": bet.round_id,
            "ref_transaction_id": bet_id,
        }
        self._session_gate(bet.session, "refund")
        if bet.applied and not bet.refunded:
            self.model.balances[SESSIONS[bet.session]] += bet.amount
        bet.refunded = True
        self._new(fields, "OK")

    @rule(sid=st.sampled_from(sorted(SESSIONS)), amount=st.integers(1, 3_000))
    def refund_unknown_bet(self, sid: str, amount: int) -> None:
        ghost = f"g{next(self.ids)}"
        fields = {
            **self._base(sid),
            "event": "refund",
            "transaction_id": f"f{next(self.ids)}",
            "amount": _money(amount),
            "round_id": "r9",
            "ref_transaction_id": ghost,
        }
        self._session_gate(sid, "refund")
        self.model.tombstones.add(ghost)
        self.model.bets[ghost] = _Bet(sid, amount, "r9", applied=False, refunded=True)
        self._new(fields, "OK")

    @precondition(lambda self: any(t not in self.sent for t in self.model.tombstones))
    @rule(data=st.data())
    def late_bet_after_refund(self, data: st.DataObject) -> None:
        ghost = data.draw(
            st.sampled_from(sorted(t for t in self.model.tombstones if t not in self.sent))
        )
        bet = self.model.bets[ghost]
        fields = {
            **self._base(bet.session),
            "event": "bet",
            "transaction_id": ghost,
            "amount": _money(bet.amount),
            "round_id": bet.round_id,
        }
        expected = self._session_gate(bet.session, "bet") or "ALREADY_REFUNDED"
        self._new(fields, expected)

    @rule(sid=st.sampled_from(sorted(SESSIONS)), round_id=st.sampled_from(ROUNDS))
    def settle(self, sid: str, round_id: str) -> None:
        fields = {
            **self._base(sid),
            "event": "settle",
            "transaction_id": f"e{next(self.ids)}",
            "round_id": round_id,
        }
        self._session_gate(sid, "settle")
        self.model.settled.add(round_id)
        self._new(fields, "OK")

    @rule(sid=st.sampled_from(sorted(SESSIONS)))
    def balance(self, sid: str) -> None:
        fields = {**self._base(sid), "event": "balance"}
        expected = self._session_gate(sid, "balance") or "OK"
        code, body, _ = self._send(fields)
        assert code == expected
        if code == "OK":
            shown = json.loads(body)["balance"]
            assert shown == _money(self.model.balances[SESSIONS[sid]])

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data(), restamp=st.booleans())
    def exact_repeat(self, data: st.DataObject, restamp: bool) -> None:
        txid = data.draw(st.sampled_from(sorted(self.sent)))
        fields, first_body, first_status = self.sent[txid]
        stamp = "2026-11-25T13:00:00Z" if restamp else None
        code, body, status = self._send(fields, stamp)
        assert (status, body) == (first_status, first_body)

    @precondition(lambda self: any("amount" in f for f, _, _ in self.sent.values()))
    @rule(data=st.data())
    def changed_repeat(self, data: st.DataObject) -> None:
        txid = data.draw(
            st.sampled_from(sorted(t for t, v in self.sent.items() if "amount" in v[0]))
        )
        fields = dict(self.sent[txid][0])
        fields["amount"] = _money(int(fields["amount"].replace(".", "")) + 1)
        code, _, status = self._send(fields)
        assert (code, status) == ("DUPLICATE_MISMATCH", 409)

    @rule(sid=st.sampled_from(sorted(SESSIONS)))
    def currency_mismatch(self, sid: str) -> None:
        player, currency = SESSIONS[sid]
        other = "USD" if currency == "EUR" else "EUR"
        fields = {
            "session_id": sid,
            "player_id": player,
            "currency": other,
            "event": "bet",
            "transaction_id": f"c{next(self.ids)}",
            "amount": "1.00",
            "round_id": "r1",
        }
        self._new(fields, "CURRENCY_MISMATCH")

    @rule(sid=st.sampled_from(sorted(SESSIONS)))
    def oversized_bet(self, sid: str) -> None:
        amount = self.model.balances[SESSIONS[sid]] + 1
        txid = f"o{next(self.ids)}"
        fields = {
            **self._base(sid),
            "event": "bet",
            "transaction_id": txid,
            "amount": _money(amount),
            "round_id": "r5",
        }
        expected = self._session_gate(sid, "bet") or "INSUFFICIENT_FUNDS"
        self.model.bets[txid] = _Bet(sid, amount, "r5", applied=False)
        self._new(fields, expected)

    @rule()
    def idle_past_the_timeout(self) -> None:
        self.now += TIMEOUT + MINUTE

    @rule(sid=st.sampled_from(sorted(SESSIONS)))
    def operator_closes_session(self, sid: str) -> None:
        assert self.operator.close_session(sid, self.now).ok
        self.model.sessions[sid].closed = True

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def balances_match_model_and_ledger(self) -> None:
        balances = self.store.balances()
        assert all(v >= 0 for v in balances.values())
        assert balances == {k: v for k, v in self.model.balances.items() if k in balances}
        assert self.store.ledger_sums() == balances

    @invariant()
    def no_transaction_moved_money_twice(self) -> None:
        rows = self.store.execute("SELECT transaction_id, kind FROM ledger")  # type: ignore[attr-defined]
        counts = Counter((str(t), str(k)) for t, k in rows)
        assert max(counts.values(), default=0) <= 1

    @invariant()
    def audit_chain_verifies(self) -> None:
        _, broken = verify_chain(self.store.audit_rows())
        assert broken is None


@pytest.mark.slow
def test_wallet_matches_integer_model(
    store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    counter = itertools.count()

    def opener() -> Store:
        if store_url.startswith("sqlite"):
            path = tmp_path_factory.mktemp("stateful") / f"w{next(counter)}.db"
            return open_store(f"sqlite:///{path}")
        store = open_store(store_url)
        _truncate(store)
        return store

    WalletMachine.store_opener = staticmethod(opener)  # type: ignore[assignment]
    run_state_machine_as_test(
        WalletMachine,
        settings=settings(
            max_examples=60 if store_url.startswith("sqlite") else 25,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def _truncate(store: Store) -> None:
    for table in (
        "players",
        "accounts",
        "sessions",
        "txns",
        "rounds",
        "ledger",
        "audit",
        "adjustments",
    ):
        store.execute(f"DELETE FROM {table}")  # type: ignore[attr-defined]
