"""Each divergence kind found exactly when planted, and nothing on clean traffic."""

from __future__ import annotations

from datetime import timedelta

from compare.testing import Scenario

from .conftest import RunDiff


def kinds(result: object) -> list[tuple[str, str | None, int]]:
    return sorted(
        (d.kind.value, d.transaction_id, d.amount_at_risk_minor)
        for d in result.divergences  # type: ignore[attr-defined]
    )


def test_clean_traffic_has_no_divergence(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day(rounds=5)
    result = run_diff(scn)
    assert result.divergences == []
    assert result.coverage["matched"] == 9  # 5 bets, 2 wins > 0, a cancelled bet, its refund
    assert result.coverage["unmatched_export"] == 0


def test_missing_in_wallet(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.settled("w-lost", "win", 7_00)
    scn.clean_day(tag="x")
    result = run_diff(scn)
    assert kinds(result) == [("MISSING_IN_WALLET", "w-lost", 7_00)]
    (d,) = result.divergences
    assert d.wallet_says == "not received" and "SETTLED win 7.00 EUR" in (d.export_says or "")


def test_missing_in_export(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.callback("win", "w-extra", 3_00)
    scn.clean_day(tag="x")
    result = run_diff(scn)
    assert kinds(result) == [("MISSING_IN_EXPORT", "w-extra", 3_00)]
    assert result.divergences[0].capture_ids == ("c13",)


def test_rows_outside_the_other_side_s_period_are_pending(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.settled("w-before", "win", 7_00)
    scn.clean_day()
    scn.callback("win", "w-after", 3_00)
    result = run_diff(scn)
    assert result.divergences == []
    assert result.notes["pending_in_wallet"] == 1
    assert result.notes["pending_in_export"] == 1


def test_zero_win_missing_from_export_is_fine(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.callback("win", "w-zero", 0)
    scn.clean_day()
    assert run_diff(scn).divergences == []


def test_amount_mismatch(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.callback("bet", "b-amt", 10_00, round_id="r9")
    scn.settled("b-amt", "bet", 12_00, round_id="r9")
    assert kinds(run_diff(scn)) == [("AMOUNT_MISMATCH", "b-amt", 2_00)]


def test_currency_mismatch(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.callback("bet", "b-cur", 10_00, round_id="r9")
    scn.settled("b-cur", "bet", 10_00, round_id="r9", currency="USD")
    result = run_diff(scn)
    assert kinds(result) == [("CURRENCY_MISMATCH", "b-cur", 10_00)]
    assert result.divergences[0].currency == "USD"


def test_status_mismatch_refused_but_settled(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet("b-ref", 10_00, round_id="r9", code="INSUFFICIENT_FUNDS")
    result = run_diff(scn)
    assert kinds(result) == [("STATUS_MISMATCH", "b-ref", 10_00)]
    assert "refused" in result.divergences[0].detail


def test_status_mismatch_applied_but_declined(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet("b-dec", 4_00, round_id="r9", status="DECLINED")
    assert kinds(run_diff(scn)) == [("STATUS_MISMATCH", "b-dec", 4_00)]


def test_status_mismatch_kept_a_cancelled_bet(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet("b-kept", 6_00, round_id="r9", status="CANCELLED")
    scn.settled("rf-kept", "refund", 6_00, round_id="r9", ref="b-kept")
    result = run_diff(scn)
    assert kinds(result) == [("STATUS_MISMATCH", "b-kept", 6_00)]
    assert "kept a bet" in result.divergences[0].detail


def test_tombstone_matches_a_cancelled_bet_and_its_refund(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.refund("rf-t", "b-t", 6_00, round_id="r9", flags=("tombstone", "no_money_moved"))
    scn.callback("bet", "b-t", 6_00, round_id="r9", code="ALREADY_REFUNDED")
    scn.settled("b-t", "bet", 6_00, round_id="r9", status="CANCELLED")
    assert run_diff(scn).divergences == []


def test_tombstone_of_a_bet_never_sent_matches_the_cancelled_pair(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.refund("rf-n", "b-never", 6_00, round_id="r9", flags=("tombstone", "no_money_moved"))
    scn.settled("b-never", "bet", 6_00, round_id="r9", status="CANCELLED")
    assert run_diff(scn).divergences == []


def test_double_applied_in_the_wallet(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-dbl", 8_00, round_id="r9")
    scn.retry(first, moves=True)
    result = run_diff(scn)
    assert kinds(result) == [("DOUBLE_APPLIED", "b-dbl", 8_00)]
    assert set(result.divergences[0].capture_ids) == {first["capture_id"], "c14"}


def test_live_response_mismatch_in_error_code(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet(
        "b-live",
        8_00,
        round_id="r9",
        status="DECLINED",
        code="INSUFFICIENT_FUNDS",
        live_code="PLAYER_BLOCKED",
    )
    result = run_diff(scn)
    assert kinds(result) == [("LIVE_RESPONSE_MISMATCH", "b-live", 0)]
    assert "403 PLAYER_BLOCKED" in (result.divergences[0].live_says or "")


def test_live_response_mismatch_in_acceptance_puts_money_at_risk(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.callback("bet", "b-acc", 8_00, round_id="r9", live_code="INSUFFICIENT_FUNDS")
    scn.settled("b-acc", "bet", 8_00, round_id="r9")
    assert kinds(run_diff(scn)) == [("LIVE_RESPONSE_MISMATCH", "b-acc", 8_00)]


def test_balance_only_difference_is_not_a_live_mismatch(run_diff: RunDiff) -> None:
    scn = Scenario(live_balance=55_55)
    scn.clean_day()
    assert run_diff(scn).divergences == []


def test_slow_response(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet("b-slow", 2_00, round_id="r9", latency_ms=3000.0)
    assert kinds(run_diff(scn)) == [("SLOW_RESPONSE", "b-slow", 0)]


def test_aggregator_gave_up_is_slow_response(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    first = scn.bet("b-gone", 2_00, round_id="r9", error="client disconnected", latency_ms=900)
    again = scn.retry(first)
    again.update(
        error=None,
        live_status=200,
        live_code="OK",
        live_balance_minor=scn.live_balance,
        latency_ms=30.0,
    )
    result = run_diff(scn)
    assert kinds(result) == [("SLOW_RESPONSE", "b-gone", 0)]
    assert "gave up" in result.divergences[0].detail


def test_late_callback_inside_the_retry_window_is_no_divergence(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.callback("win", "w-late", 5_00, round_id="r1", flags=("late",))
    scn.settled("w-late", "win", 5_00, round_id="r1", at=scn.start - timedelta(hours=5))
    result = run_diff(scn)
    assert result.divergences == []
    assert result.notes["late_within_window"] >= 1


def test_late_callback_beyond_the_retry_window(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.callback("win", "w-later", 5_00, round_id="r1", flags=("late",))
    scn.settled("w-later", "win", 5_00, round_id="r1", at=scn.start - timedelta(hours=30))
    assert kinds(run_diff(scn)) == [("LATE_CALLBACK", "w-later", 0)]


def test_one_transaction_may_carry_several_kinds(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet("b-two", 9_00, round_id="r9", code="INSUFFICIENT_FUNDS", latency_ms=4000.0)
    assert kinds(run_diff(scn)) == [
        ("SLOW_RESPONSE", "b-two", 0),
        ("STATUS_MISMATCH", "b-two", 9_00),
    ]


def test_no_decisions_at_all_leave_the_export_pending(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.settled("w-only", "win", 7_00)
    result = run_diff(scn)
    # No wallet period to compare against: the export's row waits, nothing is claimed.
    assert result.divergences == []
    assert result.coverage["unmatched_export"] == 1
    assert result.notes["pending_in_wallet"] == 1


def test_an_export_without_rows_misses_every_money_movement(run_diff: RunDiff) -> None:
    scn = Scenario()
    scn.callback("win", "w-only", 3_00)
    assert kinds(run_diff(scn)) == [("MISSING_IN_EXPORT", "w-only", 3_00)]
