"""compare.rulekernels: one pass over the keys flags what the numpy masks flagged."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compare.rulekernels import NOTES, RULES, collect, decide

NO_TIME = -(2**63)
SETTLED, DECLINED, CANCELLED, BET, WIN, REFUND = 0, 1, 2, 0, 1, 2


def numpy_rules(a: dict[str, np.ndarray], lo: int, hi: int, window: int) -> tuple[dict, dict]:
    """The rules as the numpy masks of compare.diff._export_rules wrote them (round four)."""
    in_w, in_e, ok = a["in_w"], a["in_e"], a["ok"]
    moved = a["movedc"] > 0
    st, ev, amt = a["st"], a["ev"], a["amt"]
    settled = in_e & (st == SETTLED)
    cancelled_bet = in_e & (ev == BET) & (st == CANCELLED)
    ref = np.maximum(a["e_ref"], 0)
    bound = in_e & (ev == REFUND) & (a["e_ref"] >= 0) & cancelled_bet[ref]
    pair_bad = cancelled_bet & (moved != (a["refund_moved"] > 0))
    bound_pair_bad = bound & pair_bad[ref]
    es, wc = a["e_settled"], a["w_captured"]
    outside = in_e & (es != NO_TIME) & ((es < lo) | (es > hi))
    timed = in_e & (es != NO_TIME)
    e_lo = int(es[timed].min()) if timed.any() else NO_TIME
    e_hi = int(es[timed].max()) if timed.any() else NO_TIME
    w_outside = in_w & (wc != NO_TIME) & bool(timed.any()) & ((wc < e_lo) | (wc > e_hi))
    rules, notes = {}, {}
    missing = ~in_w & (settled | cancelled_bet) & (amt > 0)
    notes["pending_in_wallet"] = int((missing & outside).sum())
    missing &= ~outside & ~bound_pair_bad
    missing &= ~(cancelled_bet & (a["refund_seen"] > 0))
    net_zero = cancelled_bet | bound
    rules["missing"], rules["missing_net_zero"] = missing & ~net_zero, missing & net_zero
    extra = in_w & ~in_e & moved
    notes["pending_in_export"] = int((extra & w_outside).sum())
    rules["extra"] = extra & ~w_outside
    both = in_w & in_e
    cur_bad = both & (a["w_cur"] >= 0) & (a["w_cur"] != a["e_cur"])
    rules["currency"] = cur_bad
    amt_bad = both & ~cur_bad & (a["w_amount"] != amt)
    rules["amount"] = amt_bad
    tomb_ok = (ev == REFUND) & ~in_e[ref] | (a["e_ref"] < 0) & (ev == REFUND)
    rules["refused"] = both & settled & ~bound & ~ok
    rules["idle"] = (
        both & settled & ~bound & ok & ~moved & (amt > 0) & ~tomb_ok & ~cur_bad & ~amt_bad
    )
    rules["refund_refused"] = both & bound & ~ok & ~bound_pair_bad
    rules["declined"] = both & ((st == DECLINED) | (st == CANCELLED) & (ev != BET)) & moved
    rules["kept"] = pair_bad & moved
    rules["refunded_untaken"] = pair_bad & ~moved
    late = both & (wc != NO_TIME) & (es != NO_TIME)
    delay = wc - es
    notes["late_within_window"] = int((late & (delay > 0) & (delay <= window)).sum())
    rules["late"] = late & (delay > window)
    return {r: np.flatnonzero(m).tolist() for r, m in rules.items()}, notes


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_one_pass_flags_the_keys_the_masks_flagged(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    small = lambda hi, dt=np.int64: rng.integers(0, hi, n).astype(dt)  # noqa: E731
    times = np.where(rng.random(n) < 0.2, NO_TIME, rng.integers(0, 100, n))
    a = {
        "in_w": rng.random(n) < 0.7,
        "in_e": rng.random(n) < 0.7,
        "ok": rng.random(n) < 0.7,
        "movedc": small(3, np.int32),
        "st": small(3, np.int8),
        "ev": small(3, np.int8),
        "amt": small(3),
        "e_ref": rng.integers(-1, n, n).astype(np.int32),
        "refund_moved": small(2, np.int32),
        "refund_seen": small(2, np.int32),
        "w_cur": rng.integers(-1, 2, n).astype(np.int32),
        "e_cur": rng.integers(-1, 2, n).astype(np.int32),
        "w_amount": small(3),
        "w_captured": np.where(rng.random(n) < 0.2, NO_TIME, rng.integers(0, 100, n)),
        "e_settled": times,
    }
    lo, hi, window = 10, 90, int(rng.integers(0, 30))
    want_rules, want_notes = numpy_rules(a, lo, hi, window)
    timed = a["in_e"] & (a["e_settled"] != NO_TIME)
    e_lo = int(a["e_settled"][timed].min()) if timed.any() else NO_TIME
    e_hi = int(a["e_settled"][timed].max()) if timed.any() else NO_TIME
    bits = np.zeros(n, np.uint16)
    counts, notes = np.zeros(len(RULES), np.int64), np.zeros(len(NOTES), np.int64)
    decide(
        *a.values(), lo, hi, e_lo, e_hi, bool(timed.any()), window, NO_TIME,
        np.array([SETTLED, DECLINED, CANCELLED, BET, REFUND], np.int64), bits, counts, notes,
    )  # fmt: skip
    keys = np.empty(int(counts.sum()), np.int64)
    collect(bits, np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), keys)
    got = dict(
        zip(RULES, (k.tolist() for k in np.split(keys, np.cumsum(counts)[:-1])), strict=True)
    )
    assert got == want_rules
    assert dict(zip(NOTES, notes.tolist(), strict=True)) == want_notes


def test_loading_ahead_loads_the_types_the_diff_uses(
    loads_ahead: Callable[[str, str], None],
) -> None:
    loads_ahead("rulekernels", "decide, collect")
