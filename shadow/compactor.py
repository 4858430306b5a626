"""Closed spool segments to Parquet files, the ``network_duplicate`` flag, and hourly merges.

This runs in its own process (:mod:`shadow.compactor_process`), away from the
proxy's event loop: the hooks only append to the spool and this does the rest,
completing each record (:func:`~shadow.spool_record.complete`: transaction id,
event, aggregator) and deciding the flag, reading the spool in the order the
proxy appended it, so the proxy keeps no set of seen ids and needs no Parquet reader.

Crash-safety rules, each one needed:

* a Parquet file is written under a hidden name (``.tmp-...``, ignored by every
  reader), fsynced, then ``os.replace``-d into place, and the directory fsynced;
* a segment is deleted only after every file made from it is in place, and the
  file names derive from the segment name, so compacting a segment again after a
  crash overwrites the same files instead of duplicating rows (at start-up those
  files are removed first, so the seen ids read back from the dataset do not
  include the rows about to be flagged again);
* merging an hour's small files writes the merged file aside, then a hidden
  journal naming its sources, then renames; the sources are deleted last.  A
  journal whose target exists means "these sources are already merged":
  start-up finishes the deletion and :mod:`shadow.dataset` skips them meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .capture_record import CaptureRecord, hour_key, partition_of, records_to_table
from .capture_schema import CAPTURE_SCHEMA
from .duplicates import DuplicateTracker
from .spool import READY_SUFFIX, SPOOL_DIRNAME, list_segments, read_segment
from .spool_record import Identifier, Identify, decode_payload

__all__ = ["Compactor", "CompactStats", "finish_merges", "merge_hour", "write_parquet_atomically"]

_DICTIONARY_COLUMNS = ["method", "path", "aggregator", "event", "error", "proxy_id"]
Report = Callable[[str], None]


@dataclass(slots=True)
class CompactStats:
    """Running totals, for logs and tests."""

    segments: int = 0
    rows: int = 0
    torn_tails: int = 0
    bad_records: int = 0
    merges: int = 0
    failures: int = 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_parquet_atomically(table: pa.Table, final: Path) -> None:
    """Write ``table`` (zstd) to a hidden temp name, fsync, rename to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".tmp-{final.name}")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def _visible_parquet(hour_dir: Path) -> list[Path]:
    return sorted(p for p in hour_dir.iterdir() if p.suffix == ".parquet" and p.name[0] not in "._")


def merge_hour(hour_dir: Path) -> int:
    """Merge the visible files of one partition into one; the number merged (0 if < 2)."""
    sources = _visible_parquet(hour_dir)
    if len(sources) < 2:
        return 0
    token = uuid.uuid4().hex
    target = hour_dir / f"merged-{token}.parquet"
    tmp = hour_dir / f".merge-{token}.parquet.tmp"
    journal = hour_dir / f".merge-{token}.json"
    try:
        with open(tmp, "wb") as fh:
            writer = pq.ParquetWriter(
                fh, CAPTURE_SCHEMA, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS
            )
            try:
                for src in sources:
                    # Through a dataset with the explicit schema, so older files
                    # with fewer columns come out conformed (nulls).
                    writer.write_table(
                        ds.dataset(src, schema=CAPTURE_SCHEMA, format="parquet").to_table()
                    )
            finally:
                writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        doc = {"target": target.name, "sources": [s.name for s in sources]}
        journal.write_text(json.dumps(doc), encoding="utf-8")
        with open(journal, "rb") as jh:
            os.fsync(jh.fileno())
        os.replace(tmp, target)
        _fsync_dir(hour_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if not target.exists():
            journal.unlink(missing_ok=True)
        raise
    for src in sources:
        src.unlink(missing_ok=True)
    journal.unlink()
    return len(sources)


def finish_merges(capture_dir: Path) -> int:
    """Complete or undo merges interrupted by a crash; the number of journals handled."""
    handled = 0
    for journal in capture_dir.glob("date=*/hour=*/.merge-*.json"):
        hour_dir = journal.parent
        try:
            doc = json.loads(journal.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = {}
        target = doc.get("target")
        if isinstance(target, str) and (hour_dir / target).exists():
            for name in doc.get("sources", []):
                (hour_dir / str(name)).unlink(missing_ok=True)
        else:
            (hour_dir / journal.name.replace(".json", ".parquet.tmp")).unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        handled += 1
    return handled


class Compactor:
    """Owns this proxy's closed segments: compacts them, merges old hours, drains on stop."""

    def __init__(
        self,
        capture_dir: Path,
        proxy_id: str,
        *,
        report_error: Report,
        report_info: Report,
        tracker: DuplicateTracker | None = None,
        identify: Identify | None = None,
        merge_grace_seconds: float = 600.0,
    ) -> None:
        self.capture_dir = capture_dir
        self.spool_dir = capture_dir / SPOOL_DIRNAME
        self.proxy_id = proxy_id
        self.report_error = report_error
        self.report_info = report_info
        self.tracker = tracker
        self.identify = identify or Identifier({})
        self.merge_grace_seconds = merge_grace_seconds
        self.stats = CompactStats()
        self._flags: dict[str, list[bool]] = {}
        self._last_failure = ""

    # -- segments --------------------------------------------------------------------

    def compact_segment(self, segment: Path) -> int:
        """Write ``segment``'s records as Parquet, then delete it; the rows written."""
        contents = read_segment(segment)
        records: list[CaptureRecord] = []
        for payload in contents.records:
            try:
                records.append(decode_payload(payload, self.identify))
            except ValueError:
                self.stats.bad_records += 1
        records = self._flagged(segment.name, records)
        by_hour: dict[int, list[CaptureRecord]] = defaultdict(list)
        for record in records:
            by_hour[hour_key(record.captured_at)].append(record)
        stem = segment.name.removesuffix(READY_SUFFIX)
        rows = 0
        for hour, hour_records in sorted(by_hour.items()):
            table = self._table(hour_records)
            write_parquet_atomically(table, self._file_of(stem, hour))
            rows += table.num_rows
        if contents.torn:
            self.stats.torn_tails += contents.torn
            self.report_info(
                f"segment {segment.name}: dropped a torn tail of {contents.torn_bytes} bytes"
            )
        segment.unlink()
        _fsync_dir(segment.parent)
        self._flags.pop(segment.name, None)
        self.stats.segments += 1
        self.stats.rows += rows
        return rows

    def _flagged(self, name: str, records: list[CaptureRecord]) -> list[CaptureRecord]:
        """The records with ``network_duplicate`` from the tracker, in spool order.

        A segment's flags are decided once: when writing it fails and it is
        retried, its ids must not count as seen before by themselves.
        """
        if self.tracker is None:
            return records
        flags = self._flags.get(name)
        if flags is None or len(flags) != len(records):
            seen = self.tracker.seen
            flags = [seen(r.aggregator, r.transaction_id, r.captured_at) for r in records]
            self._flags[name] = flags
        return [
            r if r.network_duplicate == flag else r._replace(network_duplicate=flag)
            for r, flag in zip(records, flags, strict=True)
        ]

    def _file_of(self, stem: str, hour: int) -> Path:
        date, hh = partition_of(hour)
        return self.capture_dir / f"date={date}" / f"hour={hh}" / f"seg-{stem}.parquet"

    def _table(self, records: list[CaptureRecord]) -> pa.Table:
        """The records as a table; one that Arrow refuses is dropped and counted, not fatal."""
        try:
            return records_to_table(records)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            good = []
            for record in records:
                try:
                    records_to_table([record])
                except (pa.ArrowException, ValueError, TypeError, OverflowError):
                    self.stats.bad_records += 1
                    self.report_error(f"capture {record.capture_id}: unstorable record dropped")
                else:
                    good.append(record)
            return records_to_table(good)

    def ready_segments(self) -> list[Path]:
        return list_segments(self.spool_dir, self.proxy_id, READY_SUFFIX)

    def compact_ready(self) -> int:
        """Compact every closed segment of this proxy, oldest first; the rows written."""
        rows = 0
        for segment in self.ready_segments():
            rows += self.compact_segment(segment)
        return rows

    def recover(self) -> int:
        """Start-up: finish merges, drop our stale files, load the seen ids, compact leftovers.

        The proxy has already turned its leftover ``.open`` segments into ``.ready`` ones.
        """
        with self._merge_lock(blocking=True):
            finish_merges(self.capture_dir)
        prefix = f".tmp-seg-{self.proxy_id}-"
        for stale in self.capture_dir.glob(f"date=*/hour=*/{prefix}*"):
            stale.unlink(missing_ok=True)
        leftovers = self.ready_segments()
        for segment in leftovers:  # written again below, with the flags decided again
            stem = segment.name.removesuffix(READY_SUFFIX)
            for made in self.capture_dir.glob(f"date=*/hour=*/seg-{stem}.parquet"):
                made.unlink()
        if self.tracker is not None:
            self.tracker.load(self.capture_dir)
        rows = 0
        for segment in leftovers:
            rows += self.compact_segment(segment)
        if leftovers:
            self.report_info(
                f"recovered {rows} captured rows from earlier segments "
                f"({self.stats.torn_tails} torn tail(s) dropped)"
            )
        return rows

    # -- merging ---------------------------------------------------------------------

    def merge_closed_hours(self, now: float | None = None) -> int:
        """Merge the small files of every hour that ended more than the grace ago."""
        now = time.time() if now is None else now
        current = int((now - self.merge_grace_seconds) // 3600)
        merged = 0
        with self._merge_lock(blocking=False) as locked:
            if not locked:
                return 0  # another proxy on this directory is merging
            for hour_dir in sorted(self.capture_dir.glob("date=*/hour=*")):
                if self._hour_index(hour_dir) >= current:
                    continue
                if merge_hour(hour_dir):
                    merged += 1
                    self.stats.merges += 1
        return merged

    @staticmethod
    def _hour_index(hour_dir: Path) -> int:
        try:
            date = hour_dir.parent.name.removeprefix("date=")
            hour = hour_dir.name.removeprefix("hour=")
            moment = datetime.strptime(f"{date} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)
            return int(moment.timestamp()) // 3600
        except ValueError:
            return 1 << 62  # not ours: never merged

    def _merge_lock(self, *, blocking: bool) -> _FileLock:
        return _FileLock(self.spool_dir / "merge.lock", blocking)

    # -- the loop ----------------------------------------------------------------------

    def run(self, stop: threading.Event, poll_seconds: float, merge_seconds: float) -> None:
        """Compact and merge until ``stop`` is set, then compact everything left."""
        last_merge = time.monotonic()
        backoff = poll_seconds
        while not stop.wait(backoff):
            try:
                self.compact_ready()
                if time.monotonic() - last_merge >= merge_seconds:
                    last_merge = time.monotonic()
                    self.merge_closed_hours()
                backoff = poll_seconds
                self._last_failure = ""
            except Exception as exc:  # noqa: BLE001 - keep going, say it loudly
                self.stats.failures += 1
                message = f"compaction failed: {exc}; segments stay in the spool, retrying"
                if message != self._last_failure:
                    self.report_error(message)
                    self._last_failure = message
                backoff = min(backoff * 2, 5.0)
        try:
            self.compact_ready()
        except Exception as exc:  # noqa: BLE001 - the segments stay for the next start
            self.report_error(
                f"could not compact the spool at shutdown ({exc}); "
                f"segments are kept in {self.spool_dir} for the next start"
            )


class _FileLock:
    """An flock held for a ``with`` block; ``__enter__`` says whether it was taken."""

    def __init__(self, path: Path, blocking: bool) -> None:
        self.path, self.blocking, self.fd = path, blocking, -1

    def __enter__(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
