"""A Bloom filter of the keys a replay table holds, for the misses its cache cannot answer.

In a replay nearly every callback looks up a transaction id (and often a round)
that does not exist yet.  While the write-behind cache holds a whole table, a miss
means "absent"; once the cache is cleared to bound memory, each such miss would
be a SQLite query.  The filter keeps that answer cheap: a key it has never seen
is certainly absent, and only a key it may have seen (about 0.5 % of new keys at
its fullest) goes to SQLite.  A few bytes per key instead of the key itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["KeyFilter"]

_LOW = 0xFFFF_FFFF
#: Bits per key at the fullest before the filter doubles; with 3 probes, about 0.5 % false hits.
_BITS_PER_KEY = 16


class KeyFilter:
    """Keys added are always found; a key never added is found with small probability."""

    __slots__ = ("_bits", "_mask", "count", "capacity")

    def __init__(self, keys: Iterable[Hashable] = (), *, capacity: int = 1 << 19) -> None:
        size = 1 << 16
        while size < capacity * _BITS_PER_KEY:
            size <<= 1
        self._bits = bytearray(size >> 3)
        self._mask = size - 1
        self.count = 0
        #: Keys it takes before the false-hit rate exceeds its design (see :attr:`full`).
        self.capacity = size // _BITS_PER_KEY
        for key in keys:
            self.add(key)

    @property
    def full(self) -> bool:
        """True once more keys were added than the filter was sized for: rebuild it larger."""
        return self.count > self.capacity

    def add(self, key: Hashable) -> None:
        # Three probes by double hashing of Python's own hash (a process-local filter).
        h = hash(key)
        a, b, m, bits = h & _LOW, (h >> 32) | 1, self._mask, self._bits
        i = a & m
        bits[i >> 3] |= 1 << (i & 7)
        i = (a + b) & m
        bits[i >> 3] |= 1 << (i & 7)
        i = (a + 2 * b) & m
        bits[i >> 3] |= 1 << (i & 7)
        self.count += 1

    def __contains__(self, key: Hashable) -> bool:
        h = hash(key)
        a, b, m, bits = h & _LOW, (h >> 32) | 1, self._mask, self._bits
        i = a & m
        if not bits[i >> 3] & (1 << (i & 7)):
            return False
        i = (a + b) & m
        if not bits[i >> 3] & (1 << (i & 7)):
            return False
        i = (a + 2 * b) & m
        return bool(bits[i >> 3] & (1 << (i & 7)))
