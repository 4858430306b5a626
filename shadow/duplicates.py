"""Which transaction ids this proxy has already seen: the ``network_duplicate`` flag.

An aggregator that gets no answer in time resends the same callback, possibly
from another address; the flag marks every copy after the first.  The memory
is bounded by a window (``duplicate_window_hours``, default 48): retries come
within the aggregator's retry horizon, hours not days, and a week of ids at
hundreds of callbacks a second would not fit in memory.

Across restarts the set is rebuilt at start-up from the Parquet partitions of
the window (after leftover spool segments were compacted), reading only three
columns.  No sidecar file to keep consistent: the dataset is the truth.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import pyarrow.compute as pc

from .capture_record import partition_of
from .dataset import open_captures

__all__ = ["DuplicateTracker"]

_HOUR_US = 3_600_000_000


class DuplicateTracker:
    """``seen(aggregator, transaction_id, at_us)``: True when seen within the window."""

    def __init__(self, window_hours: int) -> None:
        self.window_us = window_hours * _HOUR_US
        self._last: dict[tuple[str | None, str], int] = {}
        self._order: deque[tuple[int, tuple[str | None, str]]] = deque()

    def __len__(self) -> int:
        return len(self._last)

    def seen(self, aggregator: str | None, transaction_id: str | None, at_us: int) -> bool:
        """Record a sighting; whether the same id came before (within the window)."""
        if transaction_id is None or self.window_us <= 0:
            return False
        key = (aggregator, transaction_id)
        before = self._last.get(key)
        self._last[key] = at_us
        self._order.append((at_us, key))
        self._evict(at_us)
        return before is not None and at_us - before < self.window_us

    def _evict(self, now_us: int) -> None:
        horizon = now_us - self.window_us
        order, last = self._order, self._last
        while order and order[0][0] < horizon:
            at, key = order.popleft()
            if last.get(key) == at:
                del last[key]

    def load(self, capture_dir: Path, now_us: int | None = None) -> int:
        """Add the ids captured in the window before ``now_us``; the number of rows read."""
        if self.window_us <= 0 or not capture_dir.is_dir():
            return 0
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        start_hour = (now_us - self.window_us) // _HOUR_US
        dataset = open_captures(capture_dir)
        start_date = partition_of(start_hour)[0]
        table = dataset.to_table(
            columns=["aggregator", "transaction_id", "captured_at"],
            filter=(pc.field("date") >= start_date) & pc.field("transaction_id").is_valid(),
        )
        rows = 0
        aggs = table.column("aggregator").to_pylist()
        txids = table.column("transaction_id").to_pylist()
        ats = pc.cast(table.column("captured_at"), "int64").to_pylist()
        for at, agg, txid in sorted(zip(ats, aggs, txids, strict=True), key=lambda r: r[0]):
            if at // _HOUR_US < start_hour:
                continue
            self.seen(agg, txid, at)
            rows += 1
        return rows
