"""The compactor: segments to partitioned Parquet, duplicate flags, recovery, merges, draining."""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from shadow.capture_record import CaptureRecord, encode_record
from shadow.capture_schema import CAPTURE_SCHEMA
from shadow.compactor import Compactor, finish_merges, merge_hour
from shadow.dataset import capture_files, read_captures
from shadow.duplicates import DuplicateTracker
from shadow.spool import MAGIC, SpoolWriter, frame, list_segments

H13 = int(datetime(2024, 5, 17, 13, 30, tzinfo=UTC).timestamp() * 1_000_000)
H14 = int(datetime(2024, 5, 17, 14, 5, tzinfo=UTC).timestamp() * 1_000_000)


def record(n: int, at: int = H13, txid: str | None = None) -> CaptureRecord:
    return CaptureRecord(
        capture_id=f"c{n}",
        captured_at=at + n,
        client_addr="127.0.0.1:1",
        method="POST",
        path="/rgs/acme",
        aggregator="acme",
        request_headers=(("content-type", "application/json"),),
        request_body=b"{}",
        response_status=200,
        response_headers=(),
        response_body=b"ok",
        latency_ms=1.5,
        error=None,
        transaction_id=txid or f"t{n}",
        event="bet",
        network_duplicate=False,
        request_body_length=2,
        response_body_length=2,
        proxy_id="p1",
    )


class Reports:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.infos: list[str] = []


def compactor_of(root: Path, reports: Reports) -> Compactor:
    return Compactor(
        root,
        "p1",
        report_error=reports.errors.append,
        report_info=reports.infos.append,
        tracker=DuplicateTracker(48),
    )


def setup(tmp_path: Path) -> tuple[Path, SpoolWriter, Compactor, Reports]:
    root = tmp_path / "captures"
    writer = SpoolWriter(root / "_spool", "p1", 1 << 20, 3600)
    writer.acquire()
    reports = Reports()
    return root, writer, compactor_of(root, reports), reports


def ids(root: Path) -> list[str]:
    return sorted(read_captures(root).column("capture_id").to_pylist())


def test_a_segment_becomes_one_file_per_hour_and_is_deleted(tmp_path: Path) -> None:
    root, writer, compactor, _ = setup(tmp_path)
    for n in range(3):
        writer.append(encode_record(record(n)))
    writer.append(encode_record(record(3, at=H14)))
    writer.close()
    assert compactor.compact_ready() == 4
    files = capture_files(root)
    assert [f.parent.relative_to(root).as_posix() for f in files] == [
        "date=2024-05-17/hour=13",
        "date=2024-05-17/hour=14",
    ]
    assert list_segments(root / "_spool", "p1", ".ready") == []
    meta = pq.read_metadata(files[0])
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert pq.read_schema(files[0]).names == CAPTURE_SCHEMA.names
    assert ids(root) == ["c0", "c1", "c2", "c3"]


def test_compacting_a_segment_again_after_a_crash_duplicates_nothing(tmp_path: Path) -> None:
    root, writer, compactor, _ = setup(tmp_path)
    writer.append(encode_record(record(1)))
    writer.close()
    [segment] = list_segments(root / "_spool", "p1", ".ready")
    kept = tmp_path / "copy"
    shutil.copy(segment, kept)
    compactor.compact_ready()
    shutil.copy(kept, segment)  # as if killed after the rename, before the delete
    compactor_of(root, Reports()).recover()  # a restart
    assert ids(root) == ["c1"]
    [again] = read_captures(root).to_pylist()
    assert not again["network_duplicate"]  # its own earlier file does not make it a retry


def test_recovery_compacts_leftovers_counts_torn_tails_and_drops_own_temp_files(
    tmp_path: Path,
) -> None:
    root, writer, compactor, reports = setup(tmp_path)
    leftover = root / "_spool" / "p1-0000000000000001-000001.open"
    leftover.write_bytes(MAGIC + frame(encode_record(record(7))) + b"\x05\x00")
    hour = root / "date=2024-05-17" / "hour=13"
    hour.mkdir(parents=True)
    (hour / ".tmp-seg-p1-x.parquet").write_bytes(b"half a file")
    (hour / ".tmp-seg-p2-x.parquet").write_bytes(b"another proxy's, in progress")
    assert writer.recover_open() == 1  # the proxy's side, before the compactor starts
    assert compactor.recover() == 1
    assert compactor.stats.torn_tails == 1
    assert any("torn tail" in m for m in reports.infos)
    assert not (hour / ".tmp-seg-p1-x.parquet").exists()
    assert (hour / ".tmp-seg-p2-x.parquet").exists()
    assert ids(root) == ["c7"]


def test_undecodable_records_are_skipped_and_counted(tmp_path: Path) -> None:
    root, writer, compactor, _ = setup(tmp_path)
    writer.append(b"not marshal at all")
    writer.append(encode_record(record(1)))
    writer.close()
    compactor.compact_ready()
    assert compactor.stats.bad_records == 1
    assert ids(root) == ["c1"]


def test_run_compacts_until_stopped_then_drains(tmp_path: Path) -> None:
    root, writer, compactor, _ = setup(tmp_path)
    stop = threading.Event()
    loop = threading.Thread(target=compactor.run, args=(stop, 0.01, 3600.0))
    loop.start()
    for n in range(50):
        writer.append(encode_record(record(n)))
        if n == 24:
            writer.close()
    writer.close()
    stop.set()
    loop.join()
    assert len(ids(root)) == 50
    assert list((root / "_spool").glob("p1-*")) == []


def test_retries_are_flagged_in_spool_order_and_a_failed_write_decides_nothing_twice(
    tmp_path: Path,
) -> None:
    root, writer, compactor, _ = setup(tmp_path)
    for n, txid in enumerate(["a", "b", "a", "c", "a"]):
        writer.append(encode_record(record(n, txid=txid)))
    writer.close()
    (root / "date=2024-05-17").write_text("a file where a directory must go")
    try:
        compactor.compact_ready()
    except OSError:
        pass
    (root / "date=2024-05-17").unlink()
    assert compactor.compact_ready() == 5
    flags = {r["capture_id"]: r["network_duplicate"] for r in read_captures(root).to_pylist()}
    assert flags == {"c0": False, "c1": False, "c2": True, "c3": False, "c4": True}


def test_a_failed_compaction_keeps_the_segment_and_says_so(tmp_path: Path) -> None:
    root, writer, compactor, reports = setup(tmp_path)
    writer.append(encode_record(record(1)))
    writer.close()
    (root / "date=2024-05-17").write_text("a file where a directory must go")
    stop = threading.Event()
    stop.set()
    compactor.run(stop, 0.01, 3600.0)
    assert reports.errors and "kept" in reports.errors[0]
    assert len(list_segments(root / "_spool", "p1", ".ready")) == 1
    (root / "date=2024-05-17").unlink()
    assert compactor.compact_ready() == 1


def _hour_with_files(tmp_path: Path, count: int) -> tuple[Path, Path]:
    root, writer, compactor, _ = setup(tmp_path)
    for n in range(count):
        writer.append(encode_record(record(n)))
        writer.close()  # one segment, so one file, per record
    compactor.compact_ready()
    writer.release()
    return root, root / "date=2024-05-17" / "hour=13"


def test_merge_makes_one_file_of_an_hour(tmp_path: Path) -> None:
    root, hour = _hour_with_files(tmp_path, 5)
    assert len(capture_files(root)) == 5
    assert merge_hour(hour) == 5
    [merged] = capture_files(root)
    assert merged.name.startswith("merged-")
    assert ids(root) == [f"c{n}" for n in range(5)]
    assert [p.name for p in hour.iterdir() if p.name.startswith(".")] == []
    assert merge_hour(hour) == 0  # one file: nothing to do


def test_an_interrupted_merge_is_finished_or_undone(tmp_path: Path) -> None:
    root, hour = _hour_with_files(tmp_path, 3)
    sources = sorted(p.name for p in hour.iterdir())
    merge_hour(hour)
    [merged] = list(hour.iterdir())
    # Crash after the rename, before the sources were deleted: readers skip them.
    for name in sources:
        pq.write_table(pq.read_table(merged).slice(0, 1), hour / name)
    journal = hour / ".merge-x.json"
    journal.write_text(f'{{"target": "{merged.name}", "sources": {sources!r}}}'.replace("'", '"'))
    assert ids(root) == ["c0", "c1", "c2"]
    assert finish_merges(root) == 1
    assert sorted(p.name for p in hour.iterdir()) == [merged.name]
    # Crash before the rename: the temp file and journal go, the sources stay.
    (hour / ".merge-y.parquet.tmp").write_bytes(b"partial")
    (hour / ".merge-y.json").write_text('{"target": "merged-y.parquet", "sources": ["a"]}')
    assert finish_merges(root) == 1
    assert sorted(p.name for p in hour.iterdir()) == [merged.name]


def test_only_hours_past_the_grace_are_merged(tmp_path: Path) -> None:
    root, hour = _hour_with_files(tmp_path, 2)
    _, writer, compactor, _ = setup(tmp_path)
    in_that_hour = H13 / 1_000_000
    assert compactor.merge_closed_hours(now=in_that_hour) == 0
    assert len(capture_files(root)) == 2
    assert compactor.merge_closed_hours(now=in_that_hour + 2 * 3600) == 1
    assert len(capture_files(root)) == 1


def test_merged_files_read_like_the_originals(tmp_path: Path) -> None:
    root, hour = _hour_with_files(tmp_path, 4)
    before = read_captures(root)
    merge_hour(hour)
    assert read_captures(root).equals(before)


def test_an_unstorable_record_is_dropped_and_counted_not_fatal(tmp_path: Path) -> None:
    root, writer, compactor, reports = setup(tmp_path)
    bad = record(2)._replace(response_status="not a number")
    for r in (record(1), bad, record(3)):
        writer.append(encode_record(r))
    writer.close()
    assert compactor.compact_ready() == 2
    assert compactor.stats.bad_records == 1 and "c2" in reports.errors[0]
    assert ids(root) == ["c1", "c3"]
