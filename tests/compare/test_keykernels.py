"""compare.keykernels: one compiled pass gives the per-key facts numpy's passes give."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from compare.keykernels import wallet_keys

NO_TIME, REFUND = -(2**63), 2


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 60), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_one_pass_counts_what_the_numpy_passes_count(rows: int, keys: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tx = rng.integers(0, keys, rows).astype(np.int32)
    ref = rng.integers(-1, keys, rows).astype(np.int32)
    event = rng.integers(0, 5, rows).astype(np.int8)
    applied, ok, no_money = (rng.random(rows) < 0.7 for _ in range(3))
    amount = rng.integers(-1, 4, rows).astype(np.int64)
    captured = rng.integers(0, 10**6, rows).astype(np.int64)
    currency = rng.integers(-1, 3, rows).astype(np.int32)
    money_idx = np.flatnonzero(event <= REFUND)
    out = {
        "recv": np.zeros(keys, np.int32),
        "ok": np.zeros(keys, bool),
        "movedc": np.zeros(keys, np.int32),
        "first": np.full(keys, -1, np.int32),
        "refund_moved": np.zeros(keys, np.int32),
        "refund_seen": np.zeros(keys, np.int32),
        "w_amount": np.empty(keys, np.int64),
        "w_captured": np.empty(keys, np.int64),
        "w_cur": np.empty(keys, np.int32),
    }
    wallet_keys(
        money_idx, tx, ref, event, applied, ok, no_money, amount, captured, currency, REFUND,
        NO_TIME, *out.values(),
    )  # fmt: skip
    # The numpy passes the kernel replaces (compare.diff._Sides._wallet_side).
    wk, wrk = tx[money_idx], ref[money_idx]
    moved = (applied & ok & ~no_money & (amount > 0))[money_idx]
    okm, ev = ok[money_idx], event[money_idx]
    first = np.full(keys, -1, np.int32)
    first[wk[::-1]] = money_idx[::-1]
    safe, absent = np.maximum(first, 0), first < 0
    refunds = (ev == REFUND) & (wrk >= 0)
    want = {
        "recv": np.bincount(wk, minlength=keys),
        "ok": np.bincount(wk[okm], minlength=keys) > 0,
        "movedc": np.bincount(wk[moved], minlength=keys),
        "first": first,
        "refund_moved": np.bincount(wrk[refunds & moved], minlength=keys),
        "refund_seen": np.bincount(wrk[refunds & okm], minlength=keys),
        "w_amount": amount[safe],
        "w_captured": np.where(absent, NO_TIME, captured[safe]),
        "w_cur": np.where(absent, -1, currency[safe]),
    }
    for name, value in want.items():
        assert out[name].tolist() == value.tolist(), name


def test_loading_ahead_loads_the_types_the_diff_uses(
    loads_ahead: Callable[[str, str], None],
) -> None:
    loads_ahead("keykernels", "wallet_keys")
