"""Integer codes for millions of transaction ids: hashed a bucket at a time, on two threads.

One ``dictionary_encode`` over twenty million ids (both sides of a comparison)
builds one hash table of ten million entries: every lookup misses the cache, and
that single-threaded pass was the longest step of a comparison.  Here the ids
are first split into :data:`BUCKETS` buckets by a cheap hash of their last
bytes and length, and each bucket is encoded on its own: its table fits in the
cache, and the buckets are shared between two threads (pyarrow releases the
GIL).  Equal ids always land in the same bucket, so a bucket's codes plus the
number of keys of the buckets before it are codes for all the ids.

The split itself never moves the whole column: each group of about
:data:`GROUP_ROWS` rows is reordered by bucket on its own (a sort of small
integers and a ``take`` that stays in the cache), and a bucket is then the
concatenation of its slice of every group.

Codes follow the order of first appearance across the inputs, as one
``dictionary_encode`` of them all would give them (no dictionary is returned).
Bucket by bucket they would not: a run of rows would get codes scattered over
the whole key range, and every per-key array the diff then builds from rows (a
dozen scatters and gathers over ten million keys) would miss the cache on each
row.  In first-appearance order those passes walk memory in order, about five
times faster.  The renumbering is cheap: within a bucket, codes already follow
the rows, so only the buckets' codes need interleaving, by the row where each
key first appears (a counting sort over the rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .memory import hand_back

__all__ = [
    "BUCKETS",
    "GROUP_ROWS",
    "Grouped",
    "bucket_codes",
    "bucket_of",
    "encode_groups",
    "group",
]

#: Buckets of ids: ten million distinct ids make tables of ~40,000 entries.
BUCKETS = 256
#: Rows reordered at once: their strings and offsets (~3 MB of ids like ``t1234567``)
#: stay in the cache while ``take`` gathers them.  Both sides at ten million rows:
#: ~0.8-1.0 s wall, ~1.4-1.8 s CPU; with 2**20 rows, ~0.9-1.4 s and ~1.6-2.5 s.
GROUP_ROWS = 1 << 18
_BITS = BUCKETS.bit_length() - 1
_MIX = np.uint32(0x9E3779B1), np.uint32(0x85EBCA6B)

T = TypeVar("T")
R = TypeVar("R")


def bucket_of(chunk: pa.Array) -> np.ndarray:
    """The bucket (0 to ``BUCKETS - 1``) of every string of ``chunk``: a multiplicative
    hash of its length and last four bytes, read straight from the Arrow buffers.

    Ids of one system usually differ in their last characters (counters, random
    suffixes); ids that all end alike only fall into fewer buckets, which is slower
    but still exact.
    """
    n = len(chunk)
    _, offsets_buf, data_buf = chunk.buffers()
    offsets = np.frombuffer(offsets_buf, np.int32)[chunk.offset : chunk.offset + n + 1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    if not len(data):
        data = np.zeros(1, np.uint8)
    ends = offsets[1:]
    lengths = (ends - offsets[:-1]).astype(np.uint32)
    h = lengths * _MIX[0]
    for back in range(1, 5):
        byte = data[np.maximum(ends - back, 0)].astype(np.uint32)
        byte[lengths < back] = 0
        h ^= byte << np.uint32(8 * (back - 1))
        h *= _MIX[1]
    out: np.ndarray = (h >> np.uint32(32 - _BITS)).astype(np.uint16)
    return out


@dataclass(slots=True)
class _Group:
    """A run of rows of one input reordered by bucket: ``order[i]`` is the row (from
    ``start``) at sorted position ``i``; bucket b is sorted positions ``bounds[b:b + 2]``."""

    array: int  # which input
    start: int
    order: np.ndarray
    bounds: np.ndarray
    strings: pa.Array | None  # None once encoded (see encode_groups)
    #: The first row of this group counted across all inputs, one after the other.
    base: int

    @classmethod
    def of(cls, array: int, start: int, chunks: list[pa.Array], base: int) -> _Group:
        joined = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)
        buckets = bucket_of(joined)
        order = np.argsort(buckets, kind="stable").astype(np.int32)
        bounds = np.zeros(BUCKETS + 1, np.int64)
        np.cumsum(np.bincount(buckets, minlength=BUCKETS), out=bounds[1:])
        return cls(array, start, order, bounds, joined.take(pa.array(order)), base)

    def part(self, bucket: int) -> pa.Array:
        lo, hi = int(self.bounds[bucket]), int(self.bounds[bucket + 1])
        assert self.strings is not None  # encode_groups refuses consumed groups
        return self.strings.slice(lo, hi - lo)

    def rows(self, bucket: int) -> np.ndarray:
        """Where the strings of :meth:`part` stand across all inputs (ascending)."""
        lo, hi = int(self.bounds[bucket]), int(self.bounds[bucket + 1])
        return self.order[lo:hi] + np.int64(self.base)


def _runs(array: pa.Array | pa.ChunkedArray) -> Iterator[tuple[int, list[pa.Array]]]:
    """Consecutive chunks as strings, about GROUP_ROWS rows at a time, each run with
    its first row.  All-null chunks are left out (their codes stay -1)."""
    start, run, size = 0, list[pa.Array](), 0
    for chunk in array.chunks if isinstance(array, pa.ChunkedArray) else [array]:
        if run and (size >= GROUP_ROWS or chunk.null_count == len(chunk)):
            yield start - size, run
            run, size = [], 0
        if chunk.null_count < len(chunk):
            run.append(chunk.cast(pa.string()))
            size += len(chunk)
        start += len(chunk)
    if run:
        yield start - size, run


def _map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="idcodes") as pool:
        return list(pool.map(fn, items))


@dataclass(slots=True)
class Grouped:
    """Inputs split into groups by bucket (the first half of :func:`bucket_codes`),
    made ahead, while something else still loads, and encoded with the others later."""

    #: Row of the first input among all the inputs encoded together (see :func:`group`).
    start: int
    lengths: list[int]
    groups: list[_Group]

    @property
    def end(self) -> int:
        return self.start + sum(self.lengths)


def group(*arrays: pa.Array | pa.ChunkedArray, start: int = 0, threads: int = 2) -> Grouped:
    """Split ``arrays`` into groups by bucket; ``start``: how many rows the inputs encoded
    before these have (codes follow the order of first appearance across all of them)."""
    offsets = np.cumsum([start] + [len(a) for a in arrays]).tolist()
    runs = [
        (i, first, run, offsets[i] + first) for i, a in enumerate(arrays) for first, run in _runs(a)
    ]
    return Grouped(start, [len(a) for a in arrays], _map(lambda r: _Group.of(*r), runs, threads))


def bucket_codes(
    *arrays: pa.Array | pa.ChunkedArray, threads: int = 2
) -> tuple[list[np.ndarray], int]:
    """Shared integer codes for the strings of ``arrays``, one array of codes per input
    (nulls -1), in order of first appearance, and how many distinct strings there are."""
    return encode_groups(group(*arrays, threads=threads), threads=threads)


def encode_groups(*parts: Grouped, threads: int = 2) -> tuple[list[np.ndarray], int]:
    """:func:`bucket_codes` of the inputs of ``parts`` (each made by :func:`group`, one
    after the other: each part's ``start`` is where the one before it ends).

    The parts are consumed: their reordered copies of the ids (a third of this
    step's memory at ten million rows) are dropped once hashed, and handed back to
    the system before the codes are renumbered, so the arrays made after reuse
    their pages instead of adding to the peak.
    """
    total = 0
    for part in parts:
        if part.start != total:
            raise ValueError("the parts are not consecutive")
        if any(g.strings is None for g in part.groups):
            raise ValueError("these groups were encoded already")
        total = part.end
    width = np.int32 if total < 2**31 - 1 else np.int64
    out = [np.full(n, -1, width) for part in parts for n in part.lengths]
    first_input = np.cumsum([0] + [len(part.lengths) for part in parts]).tolist()
    groups = [(first_input[i] + g.array, g) for i, part in enumerate(parts) for g in part.groups]
    if not groups:
        return out, 0

    def encode(bucket: int) -> tuple[list[np.ndarray], np.ndarray]:
        """The bucket's codes per group, and the row where each of its keys first appears."""
        pieces = [g.part(bucket) for _, g in groups]
        encoded = pc.dictionary_encode(pa.concat_arrays(pieces))
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        codes = codes.astype(width, copy=False)
        rows = np.concatenate([g.rows(bucket) for _, g in groups])
        seen = codes >= 0
        first = np.empty(len(encoded.dictionary), np.int64)
        # Pieces are concatenated in row order, so a key's first position is its first
        # row; written backwards, the first write of each key is the one that stays.
        first[codes[seen][::-1]] = rows[seen][::-1]
        cuts = np.cumsum([len(p) for p in pieces])[:-1]
        return np.split(codes, cuts), first

    encoded = _map(encode, list(range(BUCKETS)), threads)
    for _, g in groups:  # hashed: the reordered copies of the ids are no longer needed
        g.strings = None
    hand_back()
    # Bucket by bucket, codes follow first rows already; across buckets, rank every
    # key by its first row: a mark per row and a running count (no sort).
    keys = sum(len(first) for _, first in encoded)
    marked = np.zeros(total, bool)
    for _, first in encoded:
        marked[first] = True
    rank = np.cumsum(marked, dtype=width)
    del marked
    ordered = [np.empty(len(g.order), width) for _, g in groups]
    for bucket, (pieces, first) in enumerate(encoded):
        new = np.append(rank[first] - 1, width(-1))  # code -1 (null) reads the last slot
        for (_, g), codes, piece in zip(groups, ordered, pieces, strict=True):
            codes[g.bounds[bucket] : g.bounds[bucket + 1]] = new[piece]
    del encoded, rank
    for (index, g), codes in zip(groups, ordered, strict=True):
        out[index][g.start + g.order] = codes
    return out, keys
