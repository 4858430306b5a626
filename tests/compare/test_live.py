"""Retries, live double application and external balance movements."""

from __future__ import annotations

from compare.divergence import Kind
from compare.testing import Scenario

from .conftest import RunDiff


def test_three_identical_captures_of_one_callback_are_no_divergence(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-retry", 10_00, round_id="r9")
    scn.retry(first)
    scn.retry(first)
    scn.clean_day(tag="x")
    result = run_diff(scn)
    assert result.divergences == []
    assert result.notes["external_movements"] == 0


def test_two_answers_whose_balances_moved_twice_are_double_applied(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-twice", 10_00, round_id="r9")
    assert first["live_balance_minor"] is not None
    scn.retry(first, live_balance=first["live_balance_minor"] - 10_00)
    scn.clean_day(tag="x")
    result = run_diff(scn)
    assert [(d.kind, d.transaction_id, d.amount_at_risk_minor) for d in result.divergences] == [
        (Kind.DOUBLE_APPLIED, "b-twice", 10_00)
    ]
    (d,) = result.divergences
    assert d.capture_ids == (first["capture_id"], "c14")
    assert "retry" in d.detail


def test_a_win_answered_twice_with_the_money_added_again(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.win("w-twice", 4_00, round_id="r9")
    scn.retry(first, live_balance=first["live_balance_minor"] + 4_00)
    scn.clean_day(tag="x")
    assert [d.kind for d in run_diff(scn).divergences] == [Kind.DOUBLE_APPLIED]


def test_deposit_between_callbacks_is_an_external_movement_not_a_double(
    run_diff: RunDiff,
) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-dep", 10_00, round_id="r9")
    scn.callback("balance", None, live_delta=50_00)  # a cashier deposit shows up here
    # The retry is answered with the current balance (not a stored copy): it moved nothing.
    scn.retry(first, live_balance=scn.live_balance)
    scn.clean_day(tag="x")
    result = run_diff(scn)
    assert result.divergences == []
    assert result.notes["external_movements"] == 1


def test_deposit_equal_to_a_bet_before_its_retry_is_still_no_double(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-eq", 10_00, round_id="r9")
    scn.retry(first)  # stored answer: a copy of the first, taken out of the chain
    scn.callback("balance", None, live_delta=-10_00)  # a withdrawal of the same amount
    scn.clean_day(tag="x")
    result = run_diff(scn)
    assert result.divergences == []
    assert result.notes["external_movements"] == 1


def test_wallet_repeat_of_a_rejection_is_no_divergence(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-no", 10_00, round_id="r9", code="INSUFFICIENT_FUNDS", status="DECLINED")
    scn.retry(first)
    scn.clean_day(tag="x")
    assert run_diff(scn).divergences == []
