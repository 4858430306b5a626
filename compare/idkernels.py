"""The compiled loops of :mod:`compare.idcodes` (numba): hashing, partitioning, numbering.

Each id is read straight from its Arrow buffers (offsets, bytes, validity bits)
and written once into its partition as fixed-width words: its bytes, zero
padded, with its length in the last word.  Equal ids have equal words and
different ids different words, so the numbering compares words, exactly, and
never trusts a hash.  Every function releases the GIL (``nogil``): the callers
run them on two threads.  Compiled code is cached on disk (``cache=True``): the
first comparison on a machine compiles it, once.
"""

from __future__ import annotations

import numpy as np

from .jit import inline as _inline
from .jit import kernel as _kernel

__all__ = [
    "PARTITION_BITS",
    "assign",
    "count",
    "key_layout",
    "number",
    "scatter",
]

#: 256 partitions: ten million distinct ids make tables of ~40,000 keys (L2, L3 at worst)
#: while a partition is numbered.  More partitions make smaller tables but a slower
#: :func:`scatter`: every partition's write position is on a page of its own, and on a
#: virtual machine each miss in the TLB walks two page tables (at 10M ids, 1024
#: partitions: scatter 0.45 s, 256: 0.27 s, one thread; 64: numbering 50-90 % slower).
PARTITION_BITS = 8
_SHIFT = np.uint64(64 - PARTITION_BITS)
_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_ONES, _LOW, _HIGH = (
    np.uint64(2**64 - 1),
    np.uint64(0x0101010101010101),
    np.uint64(0x8080808080808080),
)


#: How a key's words hold its length (see :func:`key_layout`).
BARE, LENGTH_BYTE, LENGTH_WORD = 0, 1, 2


def key_layout(longest: int, nul: bool) -> tuple[int, int]:
    """Words per key, and how they hold the length, for ids of up to ``longest`` bytes.

    Without a NUL byte in any id, the bytes zero padded are enough: no two ids pad
    to the same words (``t1234567``: one word).  With one, ``"a"`` and ``"a\0"``
    would, so the length goes in the last byte (a whole last word for ids of 248
    bytes and more).
    """
    if not nul:
        return max(1, -(-longest // 8)), BARE
    if longest < 248:
        return longest // 8 + 1, LENGTH_BYTE
    return longest // 8 + 2, LENGTH_WORD


@_inline
def _mix(h: np.uint64) -> np.uint64:
    h ^= h >> np.uint64(30)
    h *= _M2
    h ^= h >> np.uint64(27)
    h *= _M3
    h ^= h >> np.uint64(31)
    return h


@_inline
def _hash(data: np.ndarray, a: int, b: int) -> tuple[np.uint64, bool]:
    """The partition of the bytes ``a..b`` (a hash of them and their length, the same
    whatever the key width), and whether one of them is NUL."""
    h = np.uint64(b - a) * _M1
    nul = False
    j = a
    while j < b:
        n = min(8, b - j)
        w = np.uint64(0)
        for t in range(n):
            w |= np.uint64(data[j + t]) << np.uint64(8 * t)
        h = _mix(h ^ w) + _M1
        # A zero byte among the n read (the padding set to 0xFF first): the usual
        # bit trick, a word at a time.
        full = w if n == 8 else w | (_ONES << np.uint64(8 * n))
        if (full - _LOW) & ~full & _HIGH:
            nul = True
        j += 8
    return _mix(h) >> _SHIFT, nul


@_inline
def _partition(data: np.ndarray, a: int, b: int) -> np.uint64:
    return _hash(data, a, b)[0]


@_inline
def _valid(bits: np.ndarray, bit0: int, has_nulls: bool, i: int) -> bool:
    if not has_nulls:
        return True
    k = bit0 + i
    return bool((bits[k >> 3] >> (k & 7)) & 1)


@_kernel
def count(
    offsets: np.ndarray, data: np.ndarray, bits: np.ndarray, bit0: int, has_nulls: bool,
    counts: np.ndarray,
) -> tuple[int, bool]:  # fmt: skip
    """Add the chunk's ids to ``counts`` (per partition); returns its longest id's length
    and whether an id holds a NUL byte."""
    longest = 0
    nul = False
    for i in range(len(offsets) - 1):
        if _valid(bits, bit0, has_nulls, i):
            a, b = offsets[i], offsets[i + 1]
            longest = max(longest, b - a)
            p, zero = _hash(data, a, b)
            counts[p] += 1
            nul |= zero
    return longest, nul


@_kernel
def scatter(
    offsets: np.ndarray, data: np.ndarray, bits: np.ndarray, bit0: int, has_nulls: bool,
    row0: int, cursor: np.ndarray, words: np.ndarray, parts: np.ndarray, mode: int,
) -> None:  # fmt: skip
    """Write the chunk's ids (as key words) at their partitions' cursors, in row order,
    and each row's partition at ``parts[row0 + i]`` (``row0``: the chunk's first row in
    ``parts``); ``mode``: how the words hold the length (:func:`key_layout`)."""
    width = words.shape[1]
    for i in range(len(offsets) - 1):
        if not _valid(bits, bit0, has_nulls, i):
            continue
        a, b = offsets[i], offsets[i + 1]
        p = _partition(data, a, b)
        parts[row0 + i] = p
        e = cursor[p]
        cursor[p] = e + 1
        for w in range(width):
            word = np.uint64(0)
            start = a + 8 * w
            for t in range(start, min(start + 8, b)):
                word |= np.uint64(data[t]) << np.uint64(8 * (t - start))
            words[e, w] = word
        if mode == LENGTH_WORD:
            words[e, width - 1] = np.uint64(b - a)
        elif mode == LENGTH_BYTE:
            words[e, width - 1] |= np.uint64(b - a) << np.uint64(56)


@_inline
def _slot(words: np.ndarray, e: int) -> np.uint64:
    h = np.uint64(0)
    for w in range(words.shape[1]):
        h = _mix(h ^ words[e, w] ^ _M1)
    return h


@_inline
def _insert(
    words: np.ndarray, local: np.ndarray, lo: int, hi: int, table: np.ndarray,
    mask: np.uint64, keys: np.ndarray, n: int,
) -> int:  # fmt: skip
    width = words.shape[1]
    for e in range(lo, hi):
        s = _slot(words, e) & mask
        while True:
            c = table[s]
            if c < 0:
                table[s] = n
                for w in range(width):
                    keys[n, w] = words[e, w]
                local[e] = -n - 1  # a key's first entry
                n += 1
                break
            same = True
            for w in range(width):
                if keys[c, w] != words[e, w]:
                    same = False
                    break
            if same:
                local[e] = c
                break
            s = (s + np.uint64(1)) & mask
    return n


@_kernel
def number(
    p0: int, p1: int, bounds: np.ndarray, words0: np.ndarray, local0: np.ndarray,
    words1: np.ndarray, local1: np.ndarray, table: np.ndarray, keys: np.ndarray,
    counts: np.ndarray,
) -> None:  # fmt: skip
    """Number the keys of partitions ``p0..p1`` of both sides (side 0's entries first)
    in order of first appearance: ``local`` gets each entry's key number within its
    partition, or ``-number - 1`` at the key's first entry; ``counts`` the partition's
    keys.  ``table`` and ``keys`` are scratch space."""
    for p in range(p0, p1):
        lo0, hi0, lo1, hi1 = bounds[0, p], bounds[0, p + 1], bounds[1, p], bounds[1, p + 1]
        size = 16
        while size < 2 * ((hi0 - lo0) + (hi1 - lo1)):
            size *= 2
        table[:size] = -1
        mask = np.uint64(size - 1)
        n = _insert(words0, local0, lo0, hi0, table, mask, keys, 0)
        counts[p] = _insert(words1, local1, lo1, hi1, table, mask, keys, n)


@_kernel
def assign(
    bits: np.ndarray, bit0: int, has_nulls: bool, rows: int, row0: int, part_row0: int,
    parts: np.ndarray, cursor: np.ndarray, local: np.ndarray, key0: np.ndarray,
    codes_of_keys: np.ndarray, next_code: np.ndarray, codes: np.ndarray,
) -> None:  # fmt: skip
    """Give the chunk's rows (``codes[row0:row0 + rows]``) their codes, in row order:
    a key's first entry takes the next code, the others the code their key took.

    Row order is each partition's entry order, so one cursor per partition finds a
    row's entry, and every array is read or written nearly in order (no random writes
    over the codes).  ``parts[part_row0 + i]``: the row's partition; ``key0[p]``: the
    first key of partition p in ``codes_of_keys``.
    """
    k = next_code[0]
    for i in range(rows):
        if not _valid(bits, bit0, has_nulls, i):
            continue
        p = parts[part_row0 + i]
        e = cursor[p]
        cursor[p] = e + 1
        n = local[e]
        if n < 0:
            codes_of_keys[key0[p] - n - 1] = k
            codes[row0 + i] = k
            k += 1
        else:
            codes[row0 + i] = codes_of_keys[key0[p] + n]
    next_code[0] = k
