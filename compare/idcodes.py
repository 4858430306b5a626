"""Integer codes for millions of transaction ids: partitioned by hash, numbered exactly.

One ``dictionary_encode`` over twenty million ids (both sides of a comparison)
builds one hash table of ten million entries: every lookup misses the cache, and
that was the longest step of a comparison.  Here (the loops are compiled:
:mod:`compare.idkernels`) each side's ids are first written into
2**:data:`~compare.idkernels.PARTITION_BITS` partitions by a hash of their bytes,
as fixed-width words (the bytes and the length), and each row's partition is
noted; then each partition is numbered on its own, its table in the cache,
comparing words, so equal ids get equal codes and different ids different codes,
with no trust in a hash.  The partitions are shared between two threads.

Codes follow the order of first appearance across the inputs, as one
``dictionary_encode`` of them all would give them: every per-key array the diff
then builds from rows (a dozen scatters and gathers over ten million keys) walks
memory in order, about five times faster than over codes scattered across the
key range.  Within a partition, entries are in row order, so its keys are
numbered in order of first appearance; across partitions, one pass over the rows
in row order gives each key's first row the next code (a cursor per partition
finds a row's entry: everything is read and written nearly in order).

A side is partitioned by :func:`group`: the decisions' side while the export
still loads.  Both sides are numbered together by :func:`encode_groups`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa

from . import idkernels as K

__all__ = ["PARTITIONS", "Grouped", "bucket_codes", "encode_groups", "group", "load_kernels"]

PARTITIONS = 1 << K.PARTITION_BITS

T = TypeVar("T")
R = TypeVar("R")
_NO_BITS = np.zeros(1, np.uint8)
_PART_TYPE = np.uint8 if K.PARTITION_BITS <= 8 else np.uint16
_NO_BYTES = np.zeros(1, np.uint8)


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One chunk of ids as the kernels read it: views of its Arrow buffers."""

    offsets: np.ndarray
    data: np.ndarray
    bits: np.ndarray
    bit0: int
    has_nulls: bool
    row0: int  # its first row, counted across all the inputs encoded together

    @classmethod
    def of(cls, chunk: pa.Array, row0: int) -> _Chunk:
        chunk = chunk.cast(pa.string())
        validity, offsets, data = chunk.buffers()
        n = len(chunk)
        view = np.frombuffer(offsets, np.int32)[chunk.offset : chunk.offset + n + 1]
        raw = np.frombuffer(data, np.uint8) if data is not None and data.size else _NO_BYTES
        if chunk.null_count:
            assert validity is not None
            return cls(view, raw, np.frombuffer(validity, np.uint8), chunk.offset, True, row0)
        return cls(view, raw, _NO_BITS, 0, False, row0)


def _chunks(arrays: Sequence[pa.Array | pa.ChunkedArray], row0: int) -> list[_Chunk]:
    """The chunks that hold ids (all-null ones are left out: their codes stay -1)."""
    out = []
    for array in arrays:
        for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
            if chunk.null_count < len(chunk):
                out.append(_Chunk.of(chunk, row0))
            row0 += len(chunk)
    return out


def _map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="idcodes") as pool:
        return list(pool.map(fn, items))


def _split(items: list[T], sizes: list[int], parts: int) -> list[list[T]]:
    """``items`` cut into ``parts`` consecutive runs of about equal total size."""
    total, out, run, acc = sum(sizes), [list[T]() for _ in range(parts)], 0, 0
    for item, size in zip(items, sizes, strict=True):
        if run < parts - 1 and acc >= total * (run + 1) / parts:
            run += 1
        out[run].append(item)
        acc += size
    return out


@dataclass(slots=True)
class Grouped:
    """Inputs written into partitions (what :func:`group` makes): made ahead, while
    something else still loads, and numbered with the others by :func:`encode_groups`."""

    #: Row of the first input among all the inputs encoded together.
    start: int
    lengths: list[int]
    #: The chunks holding ids, in runs of about equal rows (one per thread), and each
    #: run's entries per partition.
    runs: list[list[_Chunk]]
    run_counts: np.ndarray
    #: The longest id, in bytes, and whether an id holds a NUL byte: the key layout
    #: follows (:func:`compare.idkernels.key_layout`).
    longest: int
    nul: bool
    #: Entries of partition p: ``bounds[p]:bounds[p + 1]``; rows ascending within each.
    bounds: np.ndarray
    words: np.ndarray | None  # None once numbered (see encode_groups)
    mode: int  # how the words hold the length
    #: Each row's partition (from ``start``; rows without an id: unset).
    parts: np.ndarray

    @property
    def end(self) -> int:
        return self.start + sum(self.lengths)

    def write(self, width: int, mode: int) -> None:
        """(Re)write the entries as keys of ``width`` words in layout ``mode``, a run
        per thread: each run writes from where the runs before it end (rows ascending)."""
        self.mode = mode
        counts = self.run_counts
        cursors = self.bounds[:-1] + np.cumsum(counts, axis=0) - counts
        words = self.words = np.empty((int(self.bounds[-1]), width), np.uint64)

        def write_run(i: int) -> None:
            for c in self.runs[i]:
                K.scatter(
                    c.offsets, c.data, c.bits, c.bit0, c.has_nulls, c.row0 - self.start,
                    cursors[i], words, self.parts, mode,
                )  # fmt: skip

        _map(write_run, list(range(len(self.runs))), len(self.runs))


def group(*arrays: pa.Array | pa.ChunkedArray, start: int = 0, threads: int = 2) -> Grouped:
    """Write ``arrays`` into partitions; ``start``: how many rows the inputs encoded
    before these have (codes follow the order of first appearance across all of them)."""
    chunks = _chunks(arrays, start)
    runs = _split(chunks, [len(c.offsets) for c in chunks], max(threads, 1))

    def count(run: list[_Chunk]) -> tuple[np.ndarray, int, bool]:
        counts, longest, nul = np.zeros(PARTITIONS, np.int64), 0, False
        for c in run:
            size, zero = K.count(c.offsets, c.data, c.bits, c.bit0, c.has_nulls, counts)
            longest, nul = max(longest, size), nul or zero
        return counts, longest, nul

    counted = _map(count, runs, threads)
    bounds = np.zeros(PARTITIONS + 1, np.int64)
    np.cumsum(sum(c for c, _, _ in counted), out=bounds[1:])
    part = Grouped(
        start,
        [len(a) for a in arrays],
        runs,
        np.stack([c for c, _, _ in counted]),
        max(n for _, n, _ in counted),
        any(z for _, _, z in counted),
        bounds,
        None,
        K.BARE,
        np.empty(sum(len(a) for a in arrays), _PART_TYPE),
    )
    part.write(*K.key_layout(part.longest, part.nul))
    return part


def load_kernels() -> None:
    """Load the compiled loops now (a third of a second per process, from numba's disk
    cache; compiled first if there is none): :mod:`compare.run` does it on a thread of
    its own while the files load, rather than on the way of the first id hashed."""
    bucket_codes(pa.array(["a", None]), pa.array(["a"]), threads=1)


def bucket_codes(
    *arrays: pa.Array | pa.ChunkedArray, threads: int = 2
) -> tuple[list[np.ndarray], int]:
    """Shared integer codes for the strings of ``arrays``, one array of codes per input
    (nulls -1), in order of first appearance, and how many distinct strings there are."""
    return encode_groups(group(*arrays, threads=threads), threads=threads)


def encode_groups(*parts: Grouped, threads: int = 2) -> tuple[list[np.ndarray], int]:
    """:func:`bucket_codes` of the inputs of one or two ``parts`` (each made by
    :func:`group`, one after the other: the second's ``start`` is where the first ends).

    The parts are consumed: their key words (most of this step's memory) are dropped
    once numbered, so the arrays made after reuse their pages.
    """
    if not 1 <= len(parts) <= 2:
        raise ValueError("one or two parts are encoded together")
    total = 0
    for part in parts:
        if part.start != total:
            raise ValueError("the parts are not consecutive")
        if part.words is None:
            raise ValueError("these groups were encoded already")
        total = part.end
    # One layout for both sides: the other side may have longer ids, or a NUL byte.
    width, mode = K.key_layout(max(p.longest for p in parts), any(p.nul for p in parts))
    for part in parts:
        assert part.words is not None
        if part.words.shape[1] != width or part.mode != mode:
            part.write(width, mode)
    first, second = parts[0], parts[1] if len(parts) == 2 else _empty(total, width)
    assert first.words is not None and second.words is not None
    words = [first.words, second.words]  # emptied once numbered, to free them
    bounds = np.stack([first.bounds, second.bounds])
    local = [np.empty(len(first.words), np.int32), np.empty(len(second.words), np.int32)]
    counts = np.zeros(PARTITIONS, np.int64)
    biggest = int((bounds[:, 1:] - bounds[:, :-1]).sum(axis=0).max(initial=0))

    def number(span: tuple[int, int]) -> None:
        size = 16
        while size < 2 * biggest:
            size *= 2
        table, keys = np.empty(size, np.int32), np.empty((max(biggest, 1), width), np.uint64)
        K.number(
            span[0], span[1], bounds, words[0], local[0], words[1], local[1], table, keys,
            counts,
        )  # fmt: skip

    _map(number, _halves(bounds, threads), threads)
    for part in parts:  # numbered: the key words are no longer needed
        part.words = None
    words.clear()
    # Codes in order of first appearance: one pass over the rows, in row order.
    width_type = np.int32 if total < 2**31 - 1 else np.int64
    codes = np.full(total, -1, width_type)
    key0 = np.zeros(PARTITIONS, np.int64)
    np.cumsum(counts[:-1], out=key0[1:])
    codes_of_keys = np.empty(int(counts.sum()), width_type)
    next_code = np.zeros(1, np.int64)
    for part, entries in zip((first, second), local, strict=True):
        cursor = part.bounds[:-1].copy()
        for c in (c for run in part.runs for c in run):
            K.assign(
                c.bits, c.bit0, c.has_nulls, len(c.offsets) - 1, c.row0, c.row0 - part.start,
                part.parts, cursor, entries, key0, codes_of_keys, next_code, codes,
            )  # fmt: skip
    out, at = [], 0
    for part in parts:
        for n in part.lengths:
            out.append(codes[at : at + n])
            at += n
    return out, int(next_code[0])


def _halves(bounds: np.ndarray, threads: int) -> list[tuple[int, int]]:
    """Partition ranges with about equal entries, one per thread."""
    if threads <= 1:
        return [(0, PARTITIONS)]
    sizes = (bounds[:, 1:] - bounds[:, :-1]).sum(axis=0).tolist()
    cuts = _split(list(range(PARTITIONS)), sizes, threads)
    return [(run[0], run[-1] + 1) for run in cuts if run]


def _empty(start: int, width: int) -> Grouped:
    return Grouped(
        start, [], [], np.zeros((0, PARTITIONS), np.int64), 0, False,
        np.zeros(PARTITIONS + 1, np.int64), np.empty((0, width), np.uint64), K.BARE,
        np.empty(0, _PART_TYPE),
    )  # fmt: skip
