"""The diff engine: wallet decisions against the settlement export (PROTOCOL.md section 5).

Both sides are reduced to integer key codes (one shared dictionary of
transaction ids, refund references included) and per-key counts built with
``np.bincount``; every rule is then a boolean mask over keys.  Only the few
flagged keys become Python objects.  This is what makes ten million decisions
a matter of seconds (``bench/compare.py``), where a DataFrame merge per rule
would copy every string column again for each kind.

Money semantics, decided once here:

* the wallet *moved money* for a key when one of its rows is APPLIED, OK, a bet,
  win or refund with a positive amount, and not flagged ``no_money_moved``;
* a bet the export CANCELLED and its refund are judged as a pair that must net
  to zero in the wallet too: bet applied and refunded, or a tombstone (refund
  first, bet never applied) both match; a kept bet is one STATUS_MISMATCH
  carrying the money, and the refund's own shortfall is folded into it;
* export rows settled outside the captured period, and wallet movements after
  the export's last row, are *pending* (counted in the summary), not missing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wallet_core.money import CurrencyTable, format_amount

from .divergence import Divergence, Kind
from .idcodes import Grouped, encode_groups, group
from .keykernels import wallet_keys
from .live import LiveAnswers, RowFinding, live_findings
from .memory import hand_back
from .options import CompareOptions
from .rows import BET, NO_TIME, REFUND, SETTLE, WIN, Rows, encode, spread, take_rows
from .rulekernels import NOTES as RULE_NOTES
from .rulekernels import RULES, collect, decide
from .settlement import Settlement

__all__ = ["DiffResult", "Wallet", "diff", "prepare_wallet"]

_EXPORT_EVENTS = ("bet", "win", "refund")
_SETTLED, _DECLINED, _CANCELLED = 0, 1, 2


@dataclass(slots=True)
class DiffResult:
    divergences: list[Divergence]
    coverage: dict[str, int]
    notes: dict[str, int] = field(default_factory=dict)
    currencies: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Finding:
    kind: Kind
    key: int
    risk: int
    detail: str
    currency_from_export: bool = False


_Ids = tuple[list[np.ndarray], int]
_NOTHING = np.zeros(0, np.int8)


@dataclass(slots=True)
class Wallet:
    """What the diff reads of the decisions alone: made by :func:`prepare_wallet`, in
    ``compare.run`` while the export still loads (its last steps use one core)."""

    rows: Rows
    #: The decisions' transaction ids and refund references written into partitions (the first
    #: half of the id hash, :func:`compare.idcodes.group`); None for a per-round export.
    ids: Grouped | None


def prepare_wallet(decisions: pa.Table, by_round: bool = False) -> Wallet:
    """The row masks and the decisions' half of the id hash, side by side."""
    with ThreadPoolExecutor(1, thread_name_prefix="compare-rows") as pool:
        rows = pool.submit(Rows.of, decisions)
        ids = None
        if not by_round:
            ids = group(decisions.column("transaction_id"), decisions.column("ref_transaction_id"))
        return Wallet(rows.result(), ids)


def _encode_ids(wallet: Grouped, export: pa.Table) -> _Ids:
    """The one hash pass over the ids, a partition at a time (:mod:`compare.idcodes`):
    every row's transaction id (not only the money rows: no copy, and the codes
    serve the row-level checks too), the refund references, and the export's."""
    exported = group(
        export.column("transaction_id"), export.column("ref_transaction_id"), start=wallet.end
    )
    return encode_groups(wallet, exported)


@dataclass(slots=True)
class _ByRow:
    """What the diff reads of each side row by row, before any key is known."""

    rows: Rows
    w_cur: np.ndarray  # currency codes shared by both sides (-1: none)
    e_cur: np.ndarray
    e_amount: np.ndarray  # export rows, in file order
    e_status: np.ndarray
    e_event: np.ndarray
    e_settled: np.ndarray

    @classmethod
    def of(cls, rows: Rows, export: pa.Table) -> _ByRow:
        w_cur, e_cur = _currency_codes(rows.column("currency"), export.column("currency"))
        out = cls(
            rows,
            w_cur,
            e_cur,
            _column_numpy(export.column("amount_minor"), 0),
            _codes(export.column("status"), ("SETTLED", "DECLINED", "CANCELLED")),
            _codes(export.column("event"), _EXPORT_EVENTS),
            _column_numpy(export.column("settled_at").cast(pa.int64()), NO_TIME),
        )
        pa.default_memory_pool().release_unused()  # this thread's heap, before it ends
        return out


class _Sides:
    """Per-key facts of both sides; arrays are indexed by key code."""

    def __init__(
        self,
        rows: Rows,
        export: pa.Table,
        by_round: bool,
        ids: _Ids | None,
        by_row: _ByRow,
        check_ids: Callable[[], None] | None = None,
    ) -> None:
        """``ids``: the transaction ids already encoded (see :func:`_encode_ids`), or None
        for the round keys, which need the rows first."""
        money = rows.money()
        self.rows, self.export, self.by_round = rows, export, by_round
        self.money_idx = np.flatnonzero(money)
        etx, eref = export.column("transaction_id"), export.column("ref_transaction_id")
        if by_round:
            take = pa.array(self.money_idx)
            half = np.where(rows.event[self.money_idx] == WIN, ":win", ":bet")
            wtx = pc.binary_join_element_wise(
                rows.column("round_id").take(take).combine_chunks(), pa.array(half), ""
            )
            wref = rows.column("ref_transaction_id").take(take)
            (wk, ek, wrk, erk), keys = encode(wtx, etx, wref, eref)
            #: The synthetic round keys (``R:bet``) exist nowhere else.
            self.keys: pa.Array | None = keys
            k = len(keys)
            del keys
        else:
            assert ids is not None  # given for transaction ids (see diff)
            (tx, ref, ek, erk), k = ids
            del ids
            rows.tx = tx
            wk, wrk = tx[self.money_idx], ref[self.money_idx]
            # Not kept (ten million ids): a key with a finding is on a wallet row or an
            # export row, which name it (see :meth:`name`).
            self.keys = None
        self.n = k
        self.wk, self.wrk = wk, wrk
        width = np.int32 if max(rows.n, len(ek)) < 2**31 else np.int64
        # The two sides' per-key arrays are made at once: numpy's gathers release the
        # GIL, and each side faults in its own fresh pages (most of their cost).
        with ThreadPoolExecutor(1, thread_name_prefix="compare-keys") as pool:
            export_side = pool.submit(self._export_side, ek, erk, by_row, width)
            if by_round:
                self._round_side(rows, by_row, width)
            else:
                self._wallet_keys(rows, by_row, width, tx, ref)
            export_side.result()
        if check_ids is not None and int(np.count_nonzero(self.in_e)) < len(ek):
            check_ids()  # a repeated export id: the load's own error

    def _round_side(self, rows: Rows, by_row: _ByRow, width: type) -> None:
        """The decisions' per-key arrays of a per-round comparison (keys ``R:bet``/``R:win``
        over the money rows, not transaction ids: :meth:`_wallet_keys` makes them for those).

        Per-key arrays as narrow as their values allow (int32 counts and rows, int8
        codes): at ten million keys each int64 array is 80 MB of the peak."""
        k, wk, wrk = self.n, self.wk, self.wrk
        ev = rows.event[self.money_idx]
        moved = rows.moved()[self.money_idx]
        ok = rows.ok[self.money_idx]
        self.recv = _counts(wk, k)
        self.ok: np.ndarray = _flags(wk[ok], k)
        # First money row of each key: written backwards, so the first row is written last.
        self.first: np.ndarray = np.full(k, -1, width)
        self.first[wk[::-1]] = self.money_idx[::-1]
        safe = np.maximum(self.first, 0)
        # Keys the wallet never received get no time and no currency, set in place:
        # an np.where would make each array twice (fresh memory is most of this step).
        absent = self.first < 0
        self.w_captured = _gather(rows.captured, safe)
        self.w_captured[absent] = NO_TIME
        self.w_cur = _gather(by_row.w_cur, safe)
        self.w_cur[absent] = -1
        del safe, absent
        # A round's net bet (refunds subtract) and its total win.
        amount = rows.amount[self.money_idx]
        signed = np.where(ev == REFUND, -amount, amount) * moved
        self.w_amount = np.bincount(wk, weights=signed, minlength=k).astype(np.int64)
        self.movedc = (self.w_amount != 0).astype(np.int32)
        refunds = (ev == REFUND) & (wrk >= 0)
        self.refund_moved = _counts(wrk[refunds & moved], k)
        # Refunds the wallet accepted, money moved or not: a tombstone names its bet here.
        self.refund_seen = _counts(wrk[refunds & ok], k)
        self.in_w = self.recv > 0

    def _wallet_keys(
        self, rows: Rows, by_row: _ByRow, width: type, tx: np.ndarray, refs: np.ndarray
    ) -> None:
        """The same per-key arrays, made in one compiled pass (:mod:`compare.keykernels`)."""
        k = self.n
        self.recv, self.movedc = np.zeros(k, np.int32), np.zeros(k, np.int32)
        self.refund_moved, self.refund_seen = np.zeros(k, np.int32), np.zeros(k, np.int32)
        self.ok = np.zeros(k, bool)
        self.first = np.full(k, -1, width)
        self.w_amount = np.empty(k, rows.amount.dtype)
        self.w_captured = np.empty(k, rows.captured.dtype)
        self.w_cur = np.empty(k, by_row.w_cur.dtype)
        # Read-only views whatever the columns were (a view of one chunk, or a copy): numba
        # compiles, and loads ahead (keykernels.load), one function per set of array types.
        amount, captured, currency = (
            _read_only(a) for a in (rows.amount, rows.captured, by_row.w_cur)
        )
        wallet_keys(
            self.money_idx, tx, refs, rows.event, rows.applied, rows.ok, rows.no_money,
            amount, captured, currency, REFUND, NO_TIME, self.recv, self.ok,
            self.movedc, self.first, self.refund_moved, self.refund_seen, self.w_amount,
            self.w_captured, self.w_cur,
        )  # fmt: skip
        self.in_w = self.recv > 0

    def _export_side(self, ek: np.ndarray, erk: np.ndarray, by_row: _ByRow, width: type) -> None:
        k = self.n
        self.erow: np.ndarray = np.full(k, -1, width)
        self.erow[ek] = np.arange(len(ek), dtype=width)
        self.in_e = self.erow >= 0
        e = np.maximum(self.erow, 0)
        self.e_amount = _gather(by_row.e_amount, e)
        self.e_status = _gather(by_row.e_status, e)
        self.e_event = _gather(by_row.e_event, e)
        self.e_settled = _gather(by_row.e_settled, e)
        self.e_cur = _gather(by_row.e_cur, e)
        del e
        ref_of = np.full(k, -1, erk.dtype)
        ref_of[ek] = erk
        self.e_ref = ref_of

    def name(self, key: int) -> str:
        """The transaction id (or round key) of ``key``."""
        if self.keys is not None:
            return str(self.keys[key].as_py())
        if self.first[key] >= 0:
            return str(self.rows.cell("transaction_id", int(self.first[key])))
        return str(self.export.column("transaction_id")[int(self.erow[key])].as_py())

    def forget_rule_inputs(self) -> None:
        """Drop the arrays only the rules read: the evidence is built after them, with
        the rest still held, and that is where the peak would otherwise be."""
        self._forget("e_amount", "e_status", "e_event", "e_settled", "w_cur", "e_cur", "e_ref")
        self._forget("ok", "refund_moved", "refund_seen")

    def forget_keys(self) -> None:
        """Drop every per-key array once the key findings are made: the row-level
        checks that follow need none of them."""
        self._forget("wk", "wrk", "money_idx", "recv", "movedc", "first", "w_amount")
        self._forget("w_captured", "erow", "in_w", "in_e")

    def _forget(self, *names: str) -> None:
        for name in names:
            setattr(self, name, _NOTHING)


def _counts(codes: np.ndarray, k: int) -> np.ndarray:
    """``np.bincount`` as int32: counts never exceed the rows, and half the memory.

    No codes (no refunds, say) give a read-only view of one zero, not ``k`` of them.
    """
    if not len(codes):
        return np.broadcast_to(np.int32(0), (k,))
    out: np.ndarray = np.bincount(codes, minlength=k).astype(np.int32, copy=False)
    return out


def _flags(codes: np.ndarray, k: int) -> np.ndarray:
    """Whether each of ``k`` keys is among ``codes``: a scatter into k booleans (no
    counts of 64 bits made first, as ``np.bincount`` would)."""
    out = np.zeros(k, bool)
    out[codes] = True
    return out


def _column_numpy(column: pa.ChunkedArray, fill: int) -> np.ndarray:
    if column.null_count:  # fill_null copies even when there is nothing to fill
        column = pc.fill_null(column, fill)
    return np.asarray(column.to_numpy(), np.int64)


def _currency_codes(
    wallet: pa.ChunkedArray, export: pa.ChunkedArray
) -> tuple[np.ndarray, np.ndarray]:
    """Shared codes of the few currencies (nulls -1), without hashing every row twice."""
    seen = pa.concat_arrays(
        [pc.unique(side).drop_null().cast(pa.string()) for side in (wallet, export)]
    )
    values = pc.unique(seen)
    return _index(wallet, values), _index(export, values)


def _index(column: pa.ChunkedArray, values: pa.Array) -> np.ndarray:
    return spread(column, lambda v: pc.index_in(v, value_set=values), -1, np.int32)


def _codes(column: pa.ChunkedArray | pa.Array, values: tuple[str, ...]) -> np.ndarray:
    names = pa.array(values)
    return spread(column, lambda v: pc.index_in(v, value_set=names), -1, np.int8)


def _span(values: np.ndarray, where: np.ndarray) -> tuple[int, int]:
    """Min and max of ``values[where]`` without copying them (NO_TIME twice when none)."""
    if not where.any():
        return NO_TIME, NO_TIME
    big = np.iinfo(np.int64).max
    lo = int(np.min(values, where=where, initial=big))
    return lo, int(np.max(values, where=where, initial=NO_TIME))


def _export_rules(s: _Sides, opts: CompareOptions, notes: dict[str, int]) -> list[_Finding]:
    """Every rule that needs both sides: which keys each flags is decided in one compiled
    pass over the keys (:func:`compare.rulekernels.decide`, where the rules are written
    out); the money at risk of the few flagged keys is reckoned here."""
    out: list[_Finding] = []
    rows = s.rows
    lo, hi = _span(rows.captured, rows.captured != NO_TIME)
    timed = s.in_e & (s.e_settled != NO_TIME)
    e_lo, e_hi = _span(s.e_settled, timed)
    any_timed = bool(timed.any())
    del timed
    bits = np.zeros(s.n, np.uint16)
    counts = np.zeros(len(RULES), np.int64)
    noted = np.zeros(len(RULE_NOTES), np.int64)
    decide(
        s.in_w, s.in_e, s.ok, s.movedc, s.e_status, s.e_event, s.e_amount, s.e_ref,
        _full(s.refund_moved, s.n), _full(s.refund_seen, s.n), s.w_cur, s.e_cur, s.w_amount,
        s.w_captured, s.e_settled, lo, hi, e_lo, e_hi, any_timed, opts.retry_window_us, NO_TIME,
        np.array([_SETTLED, _DECLINED, _CANCELLED, BET, REFUND], np.int64), bits, counts, noted,
    )  # fmt: skip
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flagged = np.empty(int(counts.sum()), np.int64)
    collect(bits, starts.copy(), flagged)
    del bits
    keys = dict(zip(RULES, np.split(flagged, np.cumsum(counts)[:-1]), strict=True))
    notes.update({name: int(n) for name, n in zip(RULE_NOTES, noted.tolist(), strict=True)})
    amt, st, ev = s.e_amount, s.e_status, s.e_event

    def at_stake(k: np.ndarray) -> np.ndarray:
        """Settled, moved, or a cancelled bet: the keys whose money a mismatch puts at risk."""
        settled = s.in_e[k] & (st[k] == _SETTLED)
        cancelled_bet = s.in_e[k] & (ev[k] == BET) & (st[k] == _CANCELLED)
        out: np.ndarray = settled | (s.movedc[k] > 0) | cancelled_bet
        return out

    def add(
        kind: Kind,
        rule: str,
        risk: Callable[[np.ndarray], np.ndarray] | int,
        detail: str,
        from_export: bool = False,
    ) -> None:
        k = keys[rule]
        risks = np.asarray(risk(k), np.int64) if callable(risk) else np.full(len(k), risk)
        for key, value in zip(k.tolist(), risks.tolist(), strict=True):
            out.append(_Finding(kind, key, value, detail, from_export))

    add(
        Kind.MISSING_IN_WALLET,
        "missing",
        lambda k: amt[k],
        "the export settled it; the wallet never received it",
        True,
    )
    add(
        Kind.MISSING_IN_WALLET,
        "missing_net_zero",
        0,
        "cancelled in the export (nets to zero); the wallet never received it",
        True,
    )
    add(
        Kind.MISSING_IN_EXPORT,
        "extra",
        lambda k: s.w_amount[k] * np.maximum(s.movedc[k], 1),
        "the wallet moved money; the export does not have it",
    )
    add(
        Kind.CURRENCY_MISMATCH,
        "currency",
        lambda k: np.where(at_stake(k), amt[k], 0),
        "the currencies differ",
        True,
    )
    add(
        Kind.AMOUNT_MISMATCH,
        "amount",
        lambda k: np.where(at_stake(k), np.abs(s.w_amount[k] - amt[k]), 0),
        "the amounts differ",
    )
    add(
        Kind.STATUS_MISMATCH,
        "refused",
        lambda k: amt[k],
        "the wallet refused what the export settled",
        True,
    )
    add(
        Kind.STATUS_MISMATCH,
        "idle",
        lambda k: amt[k],
        "the wallet accepted it but moved no money; the export settled it",
        True,
    )
    add(
        Kind.STATUS_MISMATCH,
        "refund_refused",
        0,
        "the wallet refused a refund the export settled (its bet was never applied)",
        True,
    )
    add(
        Kind.STATUS_MISMATCH,
        "declined",
        lambda k: s.w_amount[k] * s.movedc[k],
        "the wallet applied what the export declined",
    )
    add(
        Kind.STATUS_MISMATCH,
        "kept",
        lambda k: s.w_amount[k],
        "the wallet kept a bet the export cancelled (no refund moved it back)",
    )
    add(
        Kind.STATUS_MISMATCH,
        "refunded_untaken",
        lambda k: s.refund_moved[k] * amt[k],
        "the wallet refunded a bet it never took; the export cancelled it",
        True,
    )
    add(
        Kind.LATE_CALLBACK,
        "late",
        0,
        "first received after the export settled it, beyond the retry window",
    )
    return out


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.setflags(write=False)
    return view


def _full(counts: np.ndarray, n: int) -> np.ndarray:
    """A per-key count array as a real one (``_counts`` gives a read-only zero view when
    there is nothing to count)."""
    return counts if counts.strides != (0,) else np.zeros(n, counts.dtype)


def _wallet_doubles(rows: Rows, movedc: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """(first row, rows that moved money, amount) of every id the wallet moved twice.

    In the order of their first row (the order of first appearance).  ``movedc``: the
    rows that moved money per transaction id's code (``_Sides.movedc``), when known:
    then only the rows of ids moved twice are looked at (a few, not nine million).
    """
    moved = rows.moved()
    if movedc is not None:
        twice = np.zeros(len(movedc) + 1, bool)  # code -1 reads the last slot, never set
        twice[np.flatnonzero(movedc > 1)] = True
        moved &= twice[rows.tx_codes()]
        del twice
    moved_idx = np.flatnonzero(moved)
    del moved
    codes = rows.tx_codes()[moved_idx]
    if not len(codes):
        return []
    counts = np.bincount(codes)
    first = np.full(len(counts), -1, np.int32 if rows.n < 2**31 else np.int64)
    first[codes[::-1]] = moved_idx[::-1]  # the last write wins: the first row
    twice = np.flatnonzero(counts > 1)
    twice = twice[np.argsort(first[twice], kind="stable")]
    return [
        (int(first[key]), int(counts[key]), int(rows.amount[first[key]])) for key in twice.tolist()
    ]


def _round_late(rows: Rows, opts: CompareOptions) -> tuple[np.ndarray, int]:
    """Rows flagged ``late`` that came more than the retry window after their round settled."""
    late_idx = np.flatnonzero(rows.late & (rows.captured != NO_TIME))
    if not len(late_idx):
        return late_idx, 0
    settles = np.flatnonzero((rows.event == SETTLE) & rows.ok & (rows.captured != NO_TIME))
    (rc, lc), _ = encode(
        rows.column("round_id").take(pa.array(settles)),
        rows.column("round_id").take(pa.array(late_idx)),
    )
    closed = np.full(max(int(rc.max(initial=-1)), int(lc.max(initial=-1))) + 2, NO_TIME)
    order = np.argsort(rows.captured[settles])[::-1]
    closed[rc[order]] = rows.captured[settles][order]
    when = closed[lc]
    beyond = (when != NO_TIME) & (rows.captured[late_idx] - when > opts.retry_window_us)
    return late_idx[beyond], int((~beyond).sum())


@dataclass(slots=True)
class _RowPasses:
    """The row checks' passes over every decision that need no transaction ids (late
    rows, the live answers): made beside the id hash, on the thread with time to spare."""

    late: tuple[np.ndarray, int]
    live: LiveAnswers

    @classmethod
    def of(cls, rows: Rows, opts: CompareOptions) -> _RowPasses:
        return cls(_round_late(rows, opts), LiveAnswers.of(rows))


def _row_checks(
    rows: Rows, opts: CompareOptions, passes: _RowPasses, movedc: np.ndarray | None = None
) -> tuple[list[RowFinding], int, dict[str, int]]:
    """The checks that need no export: double moves, late rows, the live answers.

    Returns their findings in report order, the late rows inside the retry window,
    and the live checks' notes.  ``passes``: :meth:`_RowPasses.of` of ``rows``;
    ``movedc``: see :func:`_wallet_doubles`.
    """
    found = [
        RowFinding(
            Kind.DOUBLE_APPLIED,
            first,
            amount * (count - 1),
            f"the wallet's decisions moved money {count} times",
            wallet=f"moved money {count}x",
        )
        for first, count, amount in _wallet_doubles(rows, movedc)
    ]
    beyond, within = passes.late
    found += [
        RowFinding(
            Kind.LATE_CALLBACK,
            int(row),
            0,
            "arrived after its round closed, beyond the retry window",
        )
        for row in beyond
    ]
    live, live_notes = live_findings(rows, opts, passes.live)
    return found + live, within, live_notes


def _gather(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``values[at]``; zeros when a side has no rows at all (every ``at`` is then a clamped -1,
    and the caller masks those positions)."""
    return values[at] if len(values) else np.zeros(len(at), values.dtype)


def diff(
    decisions: pa.Table,
    settlement: Settlement | None,
    currencies: CurrencyTable,
    opts: CompareOptions | None = None,
    wallet: Wallet | None = None,
) -> DiffResult:
    """Every divergence between ``decisions`` and ``settlement`` (None: live checks only).

    ``wallet``: :func:`prepare_wallet` of ``decisions``, when it is already made.
    """
    opts = opts or CompareOptions()
    export = settlement.table if settlement is not None else _empty_export()
    by_round = settlement is not None and settlement.granularity == "round"
    if wallet is None or (wallet.ids is None and not by_round):
        wallet = prepare_wallet(decisions, by_round)
    # What needs no ids (the export's currency, status and event codes:
    # :class:`_ByRow`; the row checks' passes over every decision: :class:`_RowPasses`)
    # is made beside the id hash (itself on two threads, a partition at a time:
    # compare.idcodes), one after the other on one more thread.
    with ThreadPoolExecutor(1, thread_name_prefix="compare-rows") as pool:
        side = pool.submit(_ByRow.of, wallet.rows, export)
        early = pool.submit(_RowPasses.of, wallet.rows, opts)
        encoded = None
        if not by_round:
            assert wallet.ids is not None  # made above when missing
            encoded = _encode_ids(wallet.ids, export)
        by_row = side.result()
        passes = early.result()
    del wallet
    # The hash's leftovers sit in its threads' heaps, where the per-key arrays made
    # next would not find them: handed back, their pages come straight back (~0.3 GB
    # off the peak at ten million rows).
    hand_back()
    rows = by_row.rows
    check = settlement.check_ids if settlement else None
    sides = _Sides(rows, export, by_round, encoded, by_row, check)
    del encoded, by_row
    notes: dict[str, int] = {}
    # The row checks need the ids' codes and nothing of the export: they run beside the
    # rules (long numpy passes, which leave the interpreter to them) and make_all.
    with ThreadPoolExecutor(1, thread_name_prefix="compare-row-checks") as pool:
        # Per transaction id, the moves _Sides counted (per round they count otherwise).
        movedc = None if by_round else sides.movedc
        checks = pool.submit(_row_checks, rows, opts, passes, movedc)
        del movedc
        findings = _export_rules(sides, opts, notes) if settlement is not None else []
        sides.forget_rule_inputs()
        hand_back()
        mk = _Maker(rows, sides, export, currencies)
        out = mk.make_all(findings)
        both = sides.in_w & sides.in_e
        coverage = {
            "captured": rows.n,
            "decided": rows.n,
            "matched": int(both.sum()),
            "unmatched_wallet": int((sides.in_w & ~sides.in_e).sum()),
            "unmatched_export": int((~sides.in_w & sides.in_e).sum()),
        }
        del both
        sides.forget_keys()
        row_findings, within, live_notes = checks.result()
    hand_back()
    notes["late_within_window"] = notes.get("late_within_window", 0) + within
    out.extend(mk.from_rows(row_findings))
    notes.update(live_notes)
    seen = set(pc.unique(rows.column("currency")).drop_null().to_pylist())
    seen |= set(pc.unique(export.column("currency")).drop_null().to_pylist())
    return DiffResult(out, coverage, notes, seen)


def _empty_export() -> pa.Table:
    from .settlement import EXPORT_SCHEMA

    return EXPORT_SCHEMA.empty_table()


_WALLET_FIELDS = ("round_id", "player_id", "currency", "event", "outcome", "code")


def _rows_by_index(table: pa.Table, rows: np.ndarray) -> dict[int, dict[str, Any]]:
    """The rows ``rows`` (negative: none) of ``table`` as Python dicts, by row index."""
    wanted = np.unique(rows[rows >= 0])
    names = table.column_names
    columns = [take_rows(table.column(name), wanted).to_pylist() for name in names]
    taken = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    return dict(zip(wanted.tolist(), taken, strict=True))


class _Maker:
    """Turns findings into :class:`Divergence` values: texts, evidence, the time."""

    def __init__(
        self, rows: Rows, sides: _Sides, export: pa.Table, currencies: CurrencyTable
    ) -> None:
        self.rows, self.s, self.export, self.currencies = rows, sides, export, currencies

    def money(self, minor: int, currency: str | None) -> str:
        if currency is None or currency not in self.currencies:
            return f"{minor} minor units"
        return f"{format_amount(minor, self.currencies.exponent(currency))} {currency}"

    def row_text(self, row: int) -> str:
        get = self.rows.cell
        return (
            f"{get('event', row)} {self.money(int(self.rows.amount[row]), get('currency', row))}: "
            f"{get('outcome', row)} {get('code', row)}"
        )

    def _key_evidence(self, findings: list[_Finding]) -> dict[int, tuple[str, ...]]:
        """Capture ids per finding key in one pass (refunds naming a bet count for it)."""
        s = self.s
        wanted = np.zeros(s.n + 1, dtype=bool)  # a flag per key; code -1 reads the last slot
        wanted[np.array([f.key for f in findings], np.int64)] = True
        hit = wanted[s.wk]
        by_ref = wanted[s.wrk]
        rows = np.concatenate([s.money_idx[hit], s.money_idx[by_ref]])
        owner = np.concatenate([s.wk[hit], s.wrk[by_ref]])
        ids = self.rows.strings("capture_id", rows)
        out: dict[int, list[str]] = {}
        for key, cid in zip(owner.tolist(), ids, strict=True):
            if cid is not None and cid not in out.setdefault(key, []):
                out[key].append(cid)
        return {k: tuple(v) for k, v in out.items()}

    def make_all(self, findings: list[_Finding]) -> list[Divergence]:
        """One ``take`` per side for every finding's rows, not a lookup per cell."""
        if not findings:
            return []
        evidence = self._key_evidence(findings)
        keys = np.array([f.key for f in findings], np.int64)
        exports = _rows_by_index(self.export, self.s.erow[keys])
        wallet = _rows_by_index(self.rows.table.select(list(_WALLET_FIELDS)), self.s.first[keys])
        return [
            self.make(
                f,
                evidence.get(f.key, ()),
                exports.get(int(self.s.erow[f.key])),
                wallet.get(int(self.s.first[f.key])),
            )
            for f in findings
        ]

    def row_text_of(self, row: int, cells: dict[str, Any]) -> str:
        return (
            f"{cells['event']} {self.money(int(self.rows.amount[row]), cells['currency'])}: "
            f"{cells['outcome']} {cells['code']}"
        )

    def make(
        self,
        f: _Finding,
        capture_ids: tuple[str, ...],
        exp: dict[str, Any] | None,
        cells: dict[str, Any] | None,
    ) -> Divergence:
        s, key = self.s, f.key
        first = int(s.first[key])
        if cells is not None:
            info = {n: cells[n] for n in ("round_id", "player_id", "currency", "event")}
            label = "round total" if s.by_round else self.row_text_of(first, cells)
            wallet = f"{label}; {int(s.recv[key])} callback(s), moved money {int(s.movedc[key])}x"
            if s.by_round:
                wallet = (
                    f"{info['event']} {self.money(int(s.w_amount[key]), info['currency'])} "
                    + wallet
                )
        else:
            info, wallet = {}, "not received"
        export_text = "absent"
        if exp is not None:
            export_text = (
                f"{exp['status']} {exp['event']} "
                f"{self.money(exp['amount_minor'], exp['currency'])} "
                f"(line {exp['line']})"
            )
        currency = info.get("currency") or (exp or {}).get("currency")
        if f.currency_from_export and exp is not None:
            currency = exp["currency"]
        at = int(s.w_captured[key]) if s.w_captured[key] != NO_TIME else None
        if at is None and exp is not None and exp["settled_at"] is not None:
            at = int(
                pa.scalar(exp["settled_at"], pa.timestamp("us", tz="UTC")).cast(pa.int64()).as_py()
            )
        return Divergence(
            kind=f.kind,
            transaction_id=s.name(key),
            round_id=info.get("round_id") or (exp or {}).get("round_id"),
            player_id=info.get("player_id") or (exp or {}).get("player_id"),
            currency=currency,
            amount_at_risk_minor=f.risk,
            wallet_says=wallet,
            export_says=export_text,
            capture_ids=capture_ids,
            event=info.get("event") or (exp or {}).get("event"),
            detail=f.detail,
            at_us=at,
        )

    def from_rows(self, findings: list[RowFinding]) -> list[Divergence]:
        """Divergences anchored on rows; evidence: every capture of the same transaction."""
        if not findings:
            return []
        wanted = [f.row for f in findings if f.capture_ids is None]
        codes = self.rows.tx_codes()
        wanted_codes = codes[np.asarray(wanted, np.int64)]
        flag = np.zeros(int(codes.max(initial=-1)) + 2, dtype=bool)
        flag[wanted_codes[wanted_codes >= 0]] = True
        same = np.flatnonzero(flag[codes])  # code -1 reads the last slot, never set
        by_tx: dict[str, list[str]] = {}
        tx_of = self.rows.strings("transaction_id", same)
        for txid, cid in zip(tx_of, self.rows.strings("capture_id", same), strict=True):
            if txid is not None and cid is not None:
                by_tx.setdefault(txid, []).append(cid)
        return [self.from_row(f, by_tx) for f in findings]

    def from_row(self, f: RowFinding, by_tx: dict[str, list[str]]) -> Divergence:
        row = f.row

        def get(name: str) -> Any:
            return self.rows.cell(name, row)

        txid = get("transaction_id")
        ids = f.capture_ids
        if ids is None:
            ids = tuple(by_tx.get(txid, ())) if txid is not None else ()
        at = int(self.rows.captured[row])
        return Divergence(
            kind=f.kind,
            transaction_id=txid,
            round_id=get("round_id"),
            player_id=get("player_id"),
            currency=get("currency"),
            amount_at_risk_minor=f.risk,
            wallet_says=self.row_text(row) + (f"; {f.wallet}" if f.wallet else ""),
            live_says=f.live,
            capture_ids=ids or (get("capture_id"),),
            event=get("event"),
            detail=f.detail,
            at_us=None if at == NO_TIME else at,
        )
