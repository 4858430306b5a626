"""The compiled loop of the diff's rules over keys (:func:`compare.diff._export_rules`).

With numpy each rule is a few boolean arrays over every key (ten million at the
benchmark's size), about forty passes in all.  Here one pass over the keys
decides every rule for a key at once and notes which rules flag it (a bit per
rule); a second pass lists each rule's keys in ascending order.  The rules
themselves, and the money at risk of what they flag, stay in ``compare.diff``:
this module only answers "which keys".
"""

from __future__ import annotations

import numpy as np

from .jit import inline, kernel

__all__ = ["RULES", "collect", "decide"]

#: The rules, in the order their findings are reported (``compare.diff._export_rules``).
RULES = (
    "missing",  # MISSING_IN_WALLET, settled
    "missing_net_zero",  # MISSING_IN_WALLET, cancelled (nets to zero)
    "extra",  # MISSING_IN_EXPORT
    "currency",  # CURRENCY_MISMATCH
    "amount",  # AMOUNT_MISMATCH
    "refused",  # STATUS_MISMATCH: refused what the export settled
    "idle",  # STATUS_MISMATCH: accepted, moved nothing
    "refund_refused",  # STATUS_MISMATCH: refused a refund of a never-applied bet
    "declined",  # STATUS_MISMATCH: applied what the export declined
    "kept",  # STATUS_MISMATCH: kept a cancelled bet
    "refunded_untaken",  # STATUS_MISMATCH: refunded a bet never taken
    "late",  # LATE_CALLBACK beyond the retry window
)
#: Notes counted on the way: pending in the wallet, pending in the export, late but
#: inside the retry window.
NOTES = ("pending_in_wallet", "pending_in_export", "late_within_window")


@inline
def _cancelled_bet(
    j: int, in_e: np.ndarray, ev: np.ndarray, st: np.ndarray, bet: int, cancelled: int
) -> bool:
    return bool(in_e[j]) and ev[j] == bet and st[j] == cancelled


@kernel
def decide(
    in_w: np.ndarray, in_e: np.ndarray, ok: np.ndarray, movedc: np.ndarray, st: np.ndarray,
    ev: np.ndarray, amt: np.ndarray, e_ref: np.ndarray, refund_moved: np.ndarray,
    refund_seen: np.ndarray, w_cur: np.ndarray, e_cur: np.ndarray, w_amount: np.ndarray,
    w_captured: np.ndarray, e_settled: np.ndarray, lo: int, hi: int, e_lo: int, e_hi: int,
    any_timed: bool, window: int, no_time: int, codes: np.ndarray, bits: np.ndarray,
    counts: np.ndarray, notes: np.ndarray,
) -> None:  # fmt: skip
    """Set ``bits[k]`` (a bit per rule of :data:`RULES`) for every key, count the keys
    per rule and the :data:`NOTES`.  ``codes``: SETTLED, DECLINED, CANCELLED (statuses),
    BET, REFUND (events)."""
    settled_code, declined_code, cancelled_code = codes[0], codes[1], codes[2]
    bet, refund = codes[3], codes[4]
    for k in range(len(in_w)):
        iw, ie = bool(in_w[k]), bool(in_e[k])
        moved = movedc[k] > 0
        s, e, a = st[k], ev[k], amt[k]
        settled = ie and s == settled_code
        cb = _cancelled_bet(k, in_e, ev, st, bet, cancelled_code)
        r = e_ref[k]
        rr = r if r > 0 else 0
        bound = (
            ie and e == refund and r >= 0 and _cancelled_bet(rr, in_e, ev, st, bet, cancelled_code)
        )
        pair_bad = cb and (moved != (refund_moved[k] > 0))
        bound_pair_bad = (
            bound
            and _cancelled_bet(rr, in_e, ev, st, bet, cancelled_code)
            and ((movedc[rr] > 0) != (refund_moved[rr] > 0))
        )
        es, wc = e_settled[k], w_captured[k]
        outside = ie and es != no_time and (es < lo or es > hi)
        w_outside = iw and wc != no_time and any_timed and (wc < e_lo or wc > e_hi)
        flags = 0
        missing = (not iw) and (settled or cb) and a > 0
        if missing and outside:
            notes[0] += 1
        missing = missing and not outside and not bound_pair_bad
        missing = missing and not (cb and refund_seen[k] > 0)
        net_zero = cb or bound
        if missing and not net_zero:
            flags |= 1 << 0
        if missing and net_zero:
            flags |= 1 << 1
        extra = iw and not ie and moved
        if extra and w_outside:
            notes[1] += 1
        if extra and not w_outside:
            flags |= 1 << 2
        both = iw and ie
        cur_bad = both and w_cur[k] >= 0 and w_cur[k] != e_cur[k]
        if cur_bad:
            flags |= 1 << 3
        amt_bad = both and not cur_bad and w_amount[k] != a
        if amt_bad:
            flags |= 1 << 4
        tomb_ok = e == refund and (r < 0 or not in_e[rr])
        if both and settled and not bound and not ok[k]:
            flags |= 1 << 5
        if (
            both and settled and not bound and ok[k] and not moved and a > 0
            and not tomb_ok and not cur_bad and not amt_bad
        ):  # fmt: skip
            flags |= 1 << 6
        if both and bound and not ok[k] and not bound_pair_bad:
            flags |= 1 << 7
        if both and (s == declined_code or (s == cancelled_code and e != bet)) and moved:
            flags |= 1 << 8
        if pair_bad and moved:
            flags |= 1 << 9
        if pair_bad and not moved:
            flags |= 1 << 10
        if both and wc != no_time and es != no_time:
            delay = wc - es
            if 0 < delay <= window:
                notes[2] += 1
            if delay > window:
                flags |= 1 << 11
        bits[k] = flags
        while flags:
            low = flags & -flags
            counts[_bit(low)] += 1
            flags ^= low


@inline
def _bit(low: int) -> int:
    n = 0
    while low > 1:
        low >>= 1
        n += 1
    return n


@kernel
def collect(bits: np.ndarray, starts: np.ndarray, keys: np.ndarray) -> None:
    """Each rule's keys, ascending, at ``keys[starts[rule]:]`` (``starts``: where each
    rule's keys begin, advanced as they are written)."""
    for k in range(len(bits)):
        flags = int(bits[k])
        while flags:
            low = flags & -flags
            rule = _bit(low)
            keys[starts[rule]] = k
            starts[rule] += 1
            flags ^= low


def load() -> None:
    """Load :func:`decide` and :func:`collect` for the types the diff calls them with
    (from numba's disk cache), ahead of their first use."""
    flags, i32, i8, i64 = (np.zeros(1, t) for t in (bool, np.int32, np.int8, np.int64))
    bits = np.zeros(1, np.uint16)
    decide(
        flags, flags, flags, i32, i8, i8, i64, i32, i32, i32, i32, i32, i64, i64, i64, 0, 0,
        0, 0, False, 0, 0, np.zeros(5, np.int64), bits, np.zeros(len(RULES), np.int64),
        np.zeros(len(NOTES), np.int64),
    )  # fmt: skip
    collect(bits, np.zeros(len(RULES), np.int64), np.zeros(1, np.int64))
