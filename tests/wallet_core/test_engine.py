"""The engine against the contract's error table and rules (must show 4), in live mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wallet_core import Mode, WalletConfig, WalletCore
from wallet_core.errors import StoreBusy
from wallet_core.store import SqliteStore

from .conftest import T0, Wallet, make_wallet

BET = {"transaction_id": "t1", "amount": "10.00", "round_id": "r1"}


def body_of(result: object) -> dict[str, object]:
    return json.loads(result.response.body)  # type: ignore[attr-defined,no-any-return]


def assert_error(result: object, status: int, code: str, *, balance: str | None) -> None:
    assert result.response.status == status  # type: ignore[attr-defined]
    doc = body_of(result)
    expected_keys = {"status", "code", "message"} | ({"balance"} if balance is not None else set())
    assert set(doc) == expected_keys
    assert doc["status"] == "ERROR" and doc["code"] == code
    assert isinstance(doc["message"], str) and doc["message"]
    if balance is not None:
        assert doc["balance"] == balance


def test_success_body_has_the_contract_shape(wallet: Wallet) -> None:
    result = wallet.send("bet", **BET)
    assert result.response.status == 200
    assert body_of(result) == {
        "status": "OK",
        "balance": "90.00",
        "currency": "EUR",
        "transaction_id": "t1",
    }
    assert dict(result.response.headers)["content-type"] == "application/json"


def test_balance_has_no_transaction_id(wallet: Wallet) -> None:
    assert body_of(wallet.send("balance")) == {
        "status": "OK",
        "balance": "100.00",
        "currency": "EUR",
    }


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"event": "bet"',
        b"\xff\xfe\x00garbage",
        json.dumps(
            {
                "event": "jackpot",
                "session_id": "s1",
                "player_id": "p1",
                "currency": "EUR",
                "timestamp": "2026-11-25T12:00:00Z",
            }
        ).encode(),
    ],
    ids=["not-json", "not-object", "truncated", "invalid-utf8", "unknown-event"],
)
def test_bad_request_for_unusable_bodies(wallet: Wallet, body: bytes) -> None:
    before = wallet.counts()
    assert_error(wallet.raw(body), 400, "BAD_REQUEST", balance=None)
    assert wallet.counts() == before


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": 10},
        {"amount": 10.5},
        {"amount": "10.001"},
        {"amount": "1e3"},
        {"amount": "NaN"},
        {"amount": "-5.00"},
        {"amount": "0.00"},
        {"amount": "99999999999999999999.00"},
        {"amount": " 10.00"},
        {"transaction_id": None},
        {"transaction_id": ""},
        {"transaction_id": "x" * 129},
        {"round_id": 7},
        {"currency": "XXX"},
        {"session_id": ["s1"]},
        {"timestamp": "yesterday"},
    ],
    ids=lambda f: "-".join(f"{k}={v!r}"[:30] for k, v in f.items()),
)
def test_bad_request_for_bad_fields(wallet: Wallet, fields: dict[str, object]) -> None:
    doc = {
        "event": "bet",
        "session_id": "s1",
        "player_id": "p1",
        "currency": "EUR",
        "timestamp": "2026-11-25T12:00:00Z",
        **BET,
    }
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    before = wallet.counts()
    assert_error(wallet.raw(json.dumps(doc).encode()), 400, "BAD_REQUEST", balance=None)
    assert wallet.counts() == before


def test_body_over_the_limit_is_413_bad_request(tmp_path: Path) -> None:
    w = make_wallet(tmp_path / "w.db")
    big = b'{"pad": "' + b"x" * (64 * 1024) + b'"}'
    result = w.raw(big)
    assert_error(result, 413, "BAD_REQUEST", balance=None)


@pytest.mark.parametrize(
    "headers", [{}, {"x-rgs-signature": "sha256=00"}, {"x-rgs-signature": "md5=abc"}]
)
def test_invalid_signature(wallet: Wallet, headers: dict[str, str]) -> None:
    body = wallet.factory.body("bet", **BET)
    before = wallet.counts()
    assert_error(wallet.raw(body, headers), 401, "INVALID_SIGNATURE", balance=None)
    assert wallet.counts() == before


def test_signature_of_another_secret_is_invalid(wallet: Wallet) -> None:
    body = wallet.factory.body("bet", **BET)
    headers = wallet.factory.__class__(secret=b"other").sign(body)
    assert_error(wallet.raw(body, headers), 401, "INVALID_SIGNATURE", balance=None)


def test_unknown_aggregator_is_invalid_signature(wallet: Wallet) -> None:
    assert_error(
        wallet.send("bet", aggregator="nobody", **BET), 401, "INVALID_SIGNATURE", balance=None
    )


def test_insufficient_funds(wallet: Wallet) -> None:
    result = wallet.send("bet", transaction_id="t1", amount="100.01", round_id="r1")
    assert_error(result, 402, "INSUFFICIENT_FUNDS", balance="100.00")
    assert wallet.balance() == 10_000


def test_bet_of_the_whole_balance_is_accepted(wallet: Wallet) -> None:
    assert (
        wallet.send("bet", transaction_id="t1", amount="100.00", round_id="r1").response.status
        == 200
    )
    assert wallet.balance() == 0


def test_player_blocked_for_bet_and_balance_but_wins_still_pay(wallet: Wallet) -> None:
    wallet.operator.set_blocked("p1", True, T0)
    assert_error(wallet.send("bet", **BET), 403, "PLAYER_BLOCKED", balance="100.00")
    assert_error(wallet.send("balance"), 403, "PLAYER_BLOCKED", balance="100.00")
    assert (
        wallet.send("win", transaction_id="w1", amount="5.00", round_id="r1").response.status == 200
    )
    assert wallet.balance() == 10_500


@pytest.mark.parametrize("event", ["balance", "bet", "win", "refund", "settle"])
def test_unknown_session_in_live_mode(wallet: Wallet, event: str) -> None:
    fields = {
        "session_id": "nope",
        "transaction_id": "t9",
        "amount": "1.00",
        "round_id": "r1",
        "ref_transaction_id": "t0",
    }
    if event == "balance":
        fields = {"session_id": "nope"}
    if event == "settle":
        fields.pop("amount")
    assert_error(wallet.send(event, **fields), 404, "SESSION_NOT_FOUND", balance=None)


def test_player_not_owning_the_session(wallet: Wallet) -> None:
    result = wallet.send("bet", player_id="p2", **BET)
    assert_error(result, 404, "SESSION_NOT_FOUND", balance=None)
    assert wallet.balance("p2") == 500


def test_closed_session_refuses_bet_and_balance_but_pays_wins(wallet: Wallet) -> None:
    wallet.send("bet", **BET)
    wallet.operator.close_session("s1", wallet.now)
    assert_error(
        wallet.send("bet", transaction_id="t2", amount="1.00", round_id="r1"),
        404,
        "SESSION_NOT_FOUND",
        balance="90.00",
    )
    assert_error(wallet.send("balance"), 404, "SESSION_NOT_FOUND", balance="90.00")
    win = wallet.send("win", transaction_id="w1", amount="20.00", round_id="r1")
    assert win.response.status == 200 and "closed_session" in win.decision.flags
    refund = wallet.send(
        "refund", transaction_id="f1", amount="10.00", round_id="r1", ref_transaction_id="t1"
    )
    assert refund.response.status == 200
    assert wallet.send("settle", transaction_id="e1", round_id="r1").response.status == 200
    assert wallet.balance() == 12_000


def test_session_expires_after_idle_timeout_on_the_injected_clock(wallet: Wallet) -> None:
    assert wallet.send("balance").response.status == 200
    wallet.now += 29 * 60 * 1_000_000
    assert wallet.send("balance").response.status == 200
    wallet.now += 31 * 60 * 1_000_000
    assert_error(wallet.send("bet", **BET), 404, "SESSION_NOT_FOUND", balance="100.00")
    assert (
        wallet.send("win", transaction_id="w1", amount="1.00", round_id="r1").response.status == 200
    )
    assert_error(wallet.send("balance"), 404, "SESSION_NOT_FOUND", balance="101.00")


def test_currency_mismatch(wallet: Wallet) -> None:
    result = wallet.send("bet", currency="USD", **BET)
    assert_error(result, 409, "CURRENCY_MISMATCH", balance="100.00")


def test_duplicate_mismatch_moves_nothing(wallet: Wallet) -> None:
    wallet.send("bet", **BET)
    before = wallet.counts()
    changed = wallet.send("bet", **{**BET, "amount": "11.00"})
    assert_error(changed, 409, "DUPLICATE_MISMATCH", balance="90.00")
    assert wallet.counts() == before


def test_exact_repeat_returns_the_first_answer_byte_for_byte(wallet: Wallet) -> None:
    first = wallet.send("bet", **BET)
    wallet.send("win", transaction_id="w1", amount="50.00", round_id="r1")
    again = wallet.send("bet", **BET)
    restamped = wallet.factory.__class__(
        timestamp="2026-11-25T18:00:00Z", defaults=wallet.factory.defaults
    ).make("bet", **BET)
    third = wallet.raw(restamped[1], restamped[0])
    assert again.response == first.response == third.response
    assert again.decision.outcome.value == "REPEAT"
    assert wallet.balance() == 14_000


def test_first_rejection_is_remembered(wallet: Wallet) -> None:
    big = {"transaction_id": "t1", "amount": "150.00", "round_id": "r1"}
    first = wallet.send("bet", **big)
    wallet.send("win", transaction_id="w1", amount="100.00", round_id="r0")
    again = wallet.send("bet", **big)
    assert again.response == first.response
    assert again.response.status == 402
    assert wallet.balance() == 20_000


def test_round_closed(wallet: Wallet) -> None:
    wallet.send("bet", **BET)
    wallet.send("settle", transaction_id="e1", round_id="r1", total_bet="10.00", total_win="0.00")
    assert_error(
        wallet.send("bet", transaction_id="t2", amount="1.00", round_id="r1"),
        409,
        "ROUND_CLOSED",
        balance="90.00",
    )
    late = wallet.send("win", transaction_id="w1", amount="3.00", round_id="r1")
    assert late.response.status == 200 and "late" in late.decision.flags


def test_settle_totals_that_differ_are_recorded_not_refused(wallet: Wallet) -> None:
    wallet.send("bet", **BET)
    result = wallet.send("settle", transaction_id="e1", round_id="r1", total_bet="12.00")
    assert result.response.status == 200
    assert any(f.startswith("total_bet_mismatch") for f in result.decision.flags)


def test_already_refunded_bet_arriving_after_its_refund(wallet: Wallet) -> None:
    refund = wallet.send(
        "refund", transaction_id="f1", amount="10.00", round_id="r1", ref_transaction_id="t1"
    )
    assert refund.response.status == 200 and "tombstone" in refund.decision.flags
    late = wallet.send("bet", **BET)
    assert_error(late, 409, "ALREADY_REFUNDED", balance="100.00")
    assert wallet.send("bet", **BET).response == late.response
    assert wallet.balance() == 10_000


def test_a_bet_is_refunded_at_most_once(wallet: Wallet) -> None:
    wallet.send("bet", **BET)
    for refund_id in ("f1", "f2"):
        result = wallet.send(
            "refund",
            transaction_id=refund_id,
            amount="10.00",
            round_id="r1",
            ref_transaction_id="t1",
        )
        assert result.response.status == 200
    assert wallet.balance() == 10_000


def test_refund_that_does_not_match_its_bet_is_bad_request(wallet: Wallet) -> None:
    wallet.send("bet", **BET)
    result = wallet.send(
        "refund", transaction_id="f1", amount="9.00", round_id="r1", ref_transaction_id="t1"
    )
    assert_error(result, 400, "BAD_REQUEST", balance="90.00")


def test_retry_later_when_the_store_is_busy(tmp_path: Path) -> None:
    class BusyStore(SqliteStore):
        def transaction(self):  # type: ignore[no-untyped-def,override]
            raise StoreBusy("lock wait exceeded")

    store = BusyStore(tmp_path / "busy.db")
    core = WalletCore(store, WalletConfig.single(), mode=Mode.LIVE)
    wallet = make_wallet(tmp_path / "unused.db")
    headers, body = wallet.factory.make("bet", **BET)
    result = core.handle("default", headers, body, T0)
    assert_error(result, 503, "RETRY_LATER", balance=None)
    assert dict(result.response.headers)["retry-after"] == "1"
    assert store.execute("SELECT count(*) FROM audit") == [(0,)]


def test_shadow_mode_answers_the_mock_whatever_the_decision(shadow_wallet: Wallet) -> None:
    refused = shadow_wallet.send("bet", transaction_id="t1", amount="500.00", round_id="r1")
    assert refused.decision.code.value == "INSUFFICIENT_FUNDS"
    assert refused.response.status == 200
    assert body_of(refused) == {
        "status": "OK",
        "balance": "100.00",
        "currency": "EUR",
        "transaction_id": "t1",
    }
    assert (
        shadow_wallet.send("bet", transaction_id="t1", amount="500.00", round_id="r1").response
        == refused.response
    )


def test_shadow_mode_opens_unknown_sessions_at_first_sight(shadow_wallet: Wallet) -> None:
    result = shadow_wallet.send("bet", session_id="new", player_id="p2", **BET)
    assert result.decision.code.value == "INSUFFICIENT_FUNDS"
    assert "session_opened" in result.decision.flags
    ok = shadow_wallet.send(
        "bet", session_id="new", player_id="p2", transaction_id="t2", amount="1.00", round_id="r1"
    )
    assert ok.decision.code.value == "OK" and shadow_wallet.balance("p2") == 400


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "event",
        "transaction_id",
        "session_id",
        "player_id",
        "currency",
        "amount",
        "round_id",
        "ref_transaction_id",
        "timestamp",
        "total_bet",
        "total_win",
        "game_id",
    ]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.sampled_from(["bet", "win", "refund", "settle", "balance"]),
    changes=st.dictionaries(field_names, json_values, max_size=4),
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
)
def test_no_input_makes_the_core_raise(
    wallet: Wallet, base: str, changes: dict[str, object], raw: bytes, use_raw: bool
) -> None:
    doc: dict[str, object] = {
        "event": base,
        "session_id": "s1",
        "player_id": "p1",
        "currency": "EUR",
        "timestamp": "2026-11-25T12:00:00Z",
        "transaction_id": "fz",
        "amount": "1.00",
        "round_id": "r1",
        "ref_transaction_id": "t0",
    }
    doc.update(changes)
    body = raw if use_raw else json.dumps(doc).encode()
    result = wallet.raw(body)
    assert result.response.status in {200, 400, 401, 402, 403, 404, 409}
    assert result.decision.code.value != "RETRY_LATER"
    assert wallet.store.ledger_sums() == wallet.store.balances()
