"""The background thread that turns closed spool segments into Parquet files.

Why a thread: writing Parquet costs milliseconds, which on mitmproxy's event
loop would stall every connection; the hooks only append to the spool and this
thread does the rest.

Crash-safety rules, each one needed:

* a Parquet file is written under a hidden name (``.tmp-...``, ignored by every
  reader), fsynced, then ``os.replace``-d into place, and the directory fsynced;
* a segment is deleted only after every file made from it is in place, and the
  file names derive from the segment name, so compacting a segment again after a
  crash overwrites the same files instead of duplicating rows;
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

from .capture_record import CaptureRecord, decode_record, hour_key, partition_of, records_to_table
from .capture_schema import CAPTURE_SCHEMA
from .spool import READY_SUFFIX, SpoolWriter, list_segments, read_segment

__all__ = ["Compactor", "CompactStats", "finish_merges", "merge_hour", "write_parquet_atomically"]

SPOOL_DIRNAME = "_spool"
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
    """Owns the spool's closed segments: compacts them, merges old hours, drains on stop."""

    def __init__(
        self,
        capture_dir: Path,
        writer: SpoolWriter,
        *,
        report_error: Report,
        report_info: Report,
        poll_seconds: float = 0.25,
        fsync_seconds: float = 1.0,
        merge_seconds: float = 3600.0,
        merge_grace_seconds: float = 600.0,
    ) -> None:
        self.capture_dir = capture_dir
        self.spool_dir = capture_dir / SPOOL_DIRNAME
        self.writer = writer
        self.report_error = report_error
        self.report_info = report_info
        self.poll_seconds = poll_seconds
        self.fsync_seconds = fsync_seconds
        self.merge_seconds = merge_seconds
        self.merge_grace_seconds = merge_grace_seconds
        self.stats = CompactStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_failure = ""

    # -- segments --------------------------------------------------------------------

    def compact_segment(self, segment: Path) -> int:
        """Write ``segment``'s records as Parquet, then delete it; the rows written."""
        contents = read_segment(segment)
        by_hour: dict[int, list[CaptureRecord]] = defaultdict(list)
        for payload in contents.records:
            try:
                record = decode_record(payload)
            except ValueError:
                self.stats.bad_records += 1
                continue
            by_hour[hour_key(record.captured_at)].append(record)
        stem = segment.name.removesuffix(READY_SUFFIX)
        rows = 0
        for hour, records in sorted(by_hour.items()):
            date, hh = partition_of(hour)
            final = self.capture_dir / f"date={date}" / f"hour={hh}" / f"seg-{stem}.parquet"
            table = self._table(records)
            write_parquet_atomically(table, final)
            rows += table.num_rows
        if contents.torn:
            self.stats.torn_tails += contents.torn
            self.report_info(
                f"segment {segment.name}: dropped a torn tail of {contents.torn_bytes} bytes"
            )
        segment.unlink()
        _fsync_dir(segment.parent)
        self.stats.segments += 1
        self.stats.rows += rows
        return rows

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

    def compact_ready(self) -> int:
        """Compact every closed segment of this proxy, oldest first; the rows written."""
        rows = 0
        for segment in list_segments(self.spool_dir, self.writer.proxy_id, READY_SUFFIX):
            rows += self.compact_segment(segment)
        return rows

    def recover(self) -> int:
        """Start-up: finish merges, drop our stale temp files, compact leftovers."""
        with self._merge_lock(blocking=True):
            finish_merges(self.capture_dir)
        prefix = f".tmp-seg-{self.writer.proxy_id}-"
        for stale in self.capture_dir.glob(f"date=*/hour=*/{prefix}*"):
            stale.unlink(missing_ok=True)
        reopened = self.writer.recover_open()
        rows = self.compact_ready()
        if reopened or rows:
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

    # -- thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rgs-shadow-compactor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, publish the open segment and compact everything left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.writer.close()
            self.compact_ready()
        except Exception as exc:  # noqa: BLE001 - the segments stay for the next start
            self.report_error(
                f"could not compact the spool at shutdown ({exc}); "
                f"segments are kept in {self.spool_dir} for the next start"
            )

    def _run(self) -> None:
        last_sync = last_merge = time.monotonic()
        backoff = self.poll_seconds
        while not self._stop.wait(backoff):
            now = time.monotonic()
            try:
                self.writer.rotate_if_due(now)
                if self.fsync_seconds > 0 and now - last_sync >= self.fsync_seconds:
                    self.writer.sync()
                    last_sync = now
                self.compact_ready()
                if now - last_merge >= self.merge_seconds:
                    last_merge = now
                    self.merge_closed_hours()
                backoff = self.poll_seconds
                self._last_failure = ""
            except Exception as exc:  # noqa: BLE001 - keep the thread alive, say it loudly
                self.stats.failures += 1
                message = f"compaction failed: {exc}; segments stay in the spool, retrying"
                if message != self._last_failure:
                    self.report_error(message)
                    self._last_failure = message
                backoff = min(backoff * 2, 5.0)


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
