"""The compiled loop of the diff's per-key facts of the decisions (:class:`compare.diff._Sides`).

With numpy, each fact (callbacks received, accepted, money moved, the first row,
refunds naming the key) is its own pass over nine million money rows, with a
mask and a copy of the keys before each ``bincount``: a dozen arrays of
fresh memory for a few counters per key.  Here one pass over the money rows
updates them all, and one pass over the keys reads each key's first row.
Keys are numbered in order of first appearance, so both passes walk the
per-key arrays nearly in order.
"""

from __future__ import annotations

import numpy as np

from .jit import kernel

__all__ = ["wallet_keys"]


@kernel
def wallet_keys(
    money_idx: np.ndarray, tx: np.ndarray, ref: np.ndarray, event: np.ndarray,
    applied: np.ndarray, ok: np.ndarray, no_money: np.ndarray, amount: np.ndarray,
    captured: np.ndarray, currency: np.ndarray, refund: int, no_time: int,
    recv: np.ndarray, accepted: np.ndarray, movedc: np.ndarray, first: np.ndarray,
    refund_moved: np.ndarray, refund_seen: np.ndarray, w_amount: np.ndarray,
    w_captured: np.ndarray, w_cur: np.ndarray,
) -> None:  # fmt: skip
    """Fill the per-key arrays (counts zeroed, ``first`` -1) from the money rows.

    A row moved money when it is applied, OK, not flagged ``no_money_moved`` and has
    a positive amount (``Rows.moved``).  A key the wallet never received keeps
    ``first`` -1, no time and no currency, and row 0's amount (never read).
    """
    for j in range(len(money_idx)):
        i = money_idx[j]
        key = tx[i]
        moved = applied[i] and ok[i] and not no_money[i] and amount[i] > 0
        recv[key] += 1
        if ok[i]:
            accepted[key] = True
        if moved:
            movedc[key] += 1
        if first[key] < 0:
            first[key] = i
        if event[i] == refund and ref[i] >= 0:
            if moved:
                refund_moved[ref[i]] += 1
            if ok[i]:
                refund_seen[ref[i]] += 1
    for key in range(len(first)):
        f = first[key]
        if f >= 0:
            w_amount[key] = amount[f]
            w_captured[key] = captured[f]
            w_cur[key] = currency[f]
        else:
            w_amount[key] = amount[0] if len(amount) else 0
            w_captured[key] = no_time
            w_cur[key] = -1


def load() -> None:
    """Load :func:`wallet_keys` for the types the diff calls it with (from numba's disk
    cache: about 0.15 s per process), ahead of its first use.  The row columns it reads
    are read-only views, a type of their own to numba."""
    n, i32 = np.zeros(1, np.int64), np.zeros(1, np.int32)
    flags, i8 = np.zeros(1, bool), np.zeros(1, np.int8)
    amount, captured, currency = np.zeros(1, np.int64), np.zeros(1, np.int64), i32.copy()
    for array in (amount, captured, currency):
        array.setflags(write=False)
    wallet_keys(
        n, i32, i32 - 1, i8, flags, flags, flags, amount, captured, currency, 2, -1,
        i32.copy(), flags.copy(), i32.copy(), i32 - 1, i32.copy(), i32.copy(), n.copy(),
        n.copy(), i32.copy(),
    )  # fmt: skip
