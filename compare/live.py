"""Checks on the captured live responses: mismatched answers, slow answers, double moves.

These need no export: they compare each callback's live answer with the wallet's
decision (LIVE_RESPONSE_MISMATCH), its latency with the 3 s budget
(SLOW_RESPONSE), and walk each player's chain of live balances to tell a retry
that moved money again (DOUBLE_APPLIED) from money that moved outside the
callbacks (a cashier deposit between two bets): only the first is a wallet bug,
the second is counted as ``external_movements`` in the summary.

A retry answered with exactly the first answer (the stored-response idempotency
of PROTOCOL.md section 1) is taken out of the chain: its balance is a copy, not
a reading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .divergence import Kind
from .options import CompareOptions
from .rows import REFUND, WIN, Rows, encode, mask, same_text, spread

__all__ = ["LiveAnswers", "RowFinding", "live_findings"]


@dataclass(slots=True)
class RowFinding:
    """A divergence anchored on one decision row (evidence: its transaction's captures)."""

    kind: Kind
    row: int
    risk: int
    detail: str
    live: str | None = None
    wallet: str | None = None
    capture_ids: tuple[str, ...] | None = None


def _group_first(keys: np.ndarray, rows: np.ndarray) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for key, row in zip(keys.tolist(), rows.tolist(), strict=True):
        groups.setdefault(key, []).append(row)
    return groups


def _by_transaction(r: Rows, idx: np.ndarray) -> dict[int, list[int]]:
    """Rows grouped by transaction id; rows without one stand alone (negative keys)."""
    codes = r.tx_codes()[idx]
    codes = np.where(codes >= 0, codes, -1 - np.arange(len(idx)))
    return _group_first(codes, idx)


def _live_text(r: Rows, row: int) -> str:
    t = r.table
    status, code = t.column("live_status")[row].as_py(), t.column("live_code")[row].as_py()
    balance = t.column("live_balance_minor")[row].as_py()
    error = t.column("error")[row].as_py()
    if status is None:
        return f"no answer ({error})" if error else "no answer"
    text = f"{status} {code or ''}".strip()
    return text + (f", balance {balance} minor" if balance is not None else "")


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    """As float64 numpy (nulls 0.0): a view when the column is one chunk without nulls."""
    array: pa.Array | pa.ChunkedArray = column
    if column.num_chunks == 1:
        array = column.chunk(0)
    if array.null_count:
        array = pc.fill_null(array, 0.0)
    return np.asarray(array.to_numpy(zero_copy_only=False), np.float64)


@dataclass(slots=True)
class LiveAnswers:
    """Each row's live answer judged against its decision: a pass over every row that
    needs no transaction ids, so ``compare.diff`` makes it beside the id hash, on the
    thread with time to spare.  :func:`live_findings` then groups the few flagged rows."""

    live_ok: np.ndarray
    mismatch: np.ndarray
    latency: np.ndarray
    gave_up: np.ndarray

    @classmethod
    def of(cls, r: Rows) -> LiveAnswers:
        t = r.table
        status = t.column("live_status")
        live_code = t.column("live_code")
        answered = mask(pc.is_valid(status))
        live_ok = spread(live_code, lambda v: pc.equal(v, "OK"), False, bool) | (
            mask(pc.is_null(live_code)) & mask(pc.equal(status, 200))
        )
        transient = r.retry_later | spread(
            live_code, lambda v: pc.equal(v, "RETRY_LATER"), False, bool
        )
        codes_differ = mask(pc.is_valid(live_code)) & ~same_text(t.column("code"), live_code)
        mismatch = answered & ~transient & ((r.ok != live_ok) | (~r.ok & ~live_ok & codes_differ))
        latency = _floats(t.column("latency_ms"))
        return cls(live_ok, mismatch, latency, mask(pc.is_valid(t.column("error"))))


def live_findings(
    r: Rows, opts: CompareOptions, a: LiveAnswers
) -> tuple[list[RowFinding], dict[str, int]]:
    """LIVE_RESPONSE_MISMATCH, SLOW_RESPONSE and live DOUBLE_APPLIED findings, and the
    notes (external movements, slow answers); ``a``: :meth:`LiveAnswers.of` of ``r``."""
    t = r.table
    live_ok, latency, gave_up = a.live_ok, a.latency, a.gave_up
    out: list[RowFinding] = []
    money_event = (r.event >= 0) & (r.event <= REFUND)
    for rows in _by_transaction(r, np.flatnonzero(a.mismatch)).values():
        row = rows[0]
        accept_differs = any(r.ok[i] != live_ok[i] for i in rows)
        risk = int(r.amount[row]) if accept_differs and money_event[row] else 0
        what = "accepted/refused" if accept_differs else "error code"
        out.append(
            RowFinding(
                Kind.LIVE_RESPONSE_MISMATCH,
                row,
                risk,
                f"the wallet and the live answer differ in {what}",
                live=_live_text(r, row),
            )
        )
    slow = (latency >= opts.slow_ms) | gave_up
    for rows in _by_transaction(r, np.flatnonzero(slow)).values():
        row = rows[0]
        worst = max(float(latency[i]) for i in rows)
        detail = (
            f"the aggregator gave up waiting ({t.column('error')[row].as_py()})"
            if gave_up[rows].any()
            else f"the live answer took {worst:.0f} ms"
        )
        out.append(RowFinding(Kind.SLOW_RESPONSE, row, 0, detail, live=_live_text(r, row)))
    doubles, external = _balance_chain(r, live_ok)
    out.extend(doubles)
    latency_over = int((latency >= opts.slow_ms).sum())
    return out, {"external_movements": external, "slow_answers": latency_over}


def _balance_chain(r: Rows, live_ok: np.ndarray) -> tuple[list[RowFinding], int]:
    """Live DOUBLE_APPLIED findings and the count of unexplained balance jumps."""
    t = r.table
    balance_col = t.column("live_balance_minor")
    has = mask(pc.is_valid(balance_col))
    idx = np.flatnonzero(has)
    if len(idx) < 2:
        return [], 0
    balance = np.asarray(balance_col.to_numpy(zero_copy_only=False)[idx].astype(np.int64))
    take = pa.array(idx, pa.int64())
    tx = r.tx_codes()[idx]
    money = ((r.event >= 0) & (r.event <= REFUND))[idx] & (tx >= 0)
    ok = live_ok[idx]
    # First accepted live answer of each transaction, and its balance.
    cand = np.flatnonzero(money & ok)
    firsts = np.full(int(tx.max(initial=-1)) + 1, -1, np.int64)
    if len(cand):
        uniq, pos = np.unique(tx[cand], return_index=True)
        firsts[uniq] = cand[pos]
    safe_tx = np.maximum(tx, 0)
    first_pos = np.where(money & ok & (tx >= 0), firsts[safe_tx], -1)
    is_first = first_pos == np.arange(len(idx))
    repeat = (first_pos >= 0) & ~is_first
    replay = repeat & (balance == balance[np.maximum(first_pos, 0)])
    keep = ~replay
    sign = np.where((r.event[idx] == WIN) | (r.event[idx] == REFUND), 1, -1)
    effect = np.where(is_first & ~r.no_money[idx], sign * r.amount[idx], 0)
    (acct,), _ = encode(
        pc.binary_join_element_wise(
            t.column("player_id").take(take).cast(pa.string()),
            t.column("currency").take(take).cast(pa.string()),
            "\x1f",
        )
    )
    k_idx = np.flatnonzero(keep)
    order = k_idx[np.argsort(acct[k_idx], kind="stable")]
    same = acct[order][1:] == acct[order][:-1]
    cur, prev = order[1:][same], order[:-1][same]
    delta = balance[cur] - balance[prev]
    again = repeat[cur] & (r.amount[idx][cur] > 0) & (delta == sign[cur] * r.amount[idx][cur])
    unexplained = (delta - effect[cur] != 0) & ~again
    out = []
    for c, p in zip(cur[again].tolist(), prev[again].tolist(), strict=True):
        row, first = int(idx[c]), int(idx[first_pos[c]])
        ids = tuple(x for x in r.strings("capture_id", np.array([first, row])) if x is not None)
        out.append(
            RowFinding(
                Kind.DOUBLE_APPLIED,
                row,
                int(r.amount[row]),
                f"the live balance moved by the amount again on a retry "
                f"({int(balance[p])} -> {int(balance[c])} minor)",
                live=f"first answer balance {int(balance[first_pos[c]])}, "
                f"retry answer balance {int(balance[c])} minor",
                capture_ids=ids,
            )
        )
    return out, int(unexplained.sum())
