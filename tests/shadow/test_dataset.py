"""The capture reader: explicit schema, hidden files and merge journals, pandas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from shadow.capture_record import CaptureRecord, records_to_table
from shadow.capture_schema import CAPTURE_SCHEMA
from shadow.dataset import (
    DATASET_SCHEMA,
    capture_files,
    open_captures,
    read_captures,
    read_captures_pandas,
)

AT = datetime(2024, 5, 17, 13, 0, 1, tzinfo=UTC)
AT_US = int(AT.timestamp() * 1_000_000)


def new_row(capture_id: str) -> CaptureRecord:
    return CaptureRecord(
        capture_id,
        AT_US + 5,
        "[::1]:9",
        "POST",
        "/rgs/a",
        "a",
        (("x-k", "v"),),
        b"{}",
        200,
        (),
        b"ok",
        2.0,
        None,
        "t-new",
        "win",
        True,
        2,
        2,
        "p",
    )


def hour_dir(root: Path) -> Path:
    path = root / "date=2024-05-17" / "hour=13"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_old_file(path: Path) -> None:
    """A file from a version that had only the contract's first columns."""
    old = pa.table(
        {
            "capture_id": ["old-1"],
            "captured_at": pa.array([AT], pa.timestamp("us", tz="UTC")),
            "client_addr": ["127.0.0.1:5"],
            "method": ["POST"],
            "path": ["/rgs/a"],
            "aggregator": ["a"],
            "request_headers": ["{}"],
            "request_body": pa.array([b'{"transaction_id":"t-old"}'], pa.binary()),
            "response_status": pa.array([200], pa.int32()),
            "transaction_id": ["t-old"],
        }
    )
    pq.write_table(old, path)


def test_old_files_with_fewer_columns_read_with_nulls(tmp_path: Path) -> None:
    hour = hour_dir(tmp_path)
    write_old_file(hour / "a-old.parquet")  # sorts first: its schema must not win
    pq.write_table(records_to_table([new_row("new-1")]), hour / "b-new.parquet")
    table = read_captures(tmp_path)
    assert table.schema.names == DATASET_SCHEMA.names
    old, new = table.to_pylist()
    assert old["capture_id"] == "old-1" and old["transaction_id"] == "t-old"
    assert old["event"] is None and old["network_duplicate"] is None and old["latency_ms"] is None
    assert old["response_body_length"] is None
    assert new["event"] == "win" and new["network_duplicate"] is True
    assert new["request_headers"] == '{"x-k":"v"}'
    assert (old["date"], old["hour"]) == ("2024-05-17", "13")


def test_temp_files_journals_and_the_spool_are_not_read(tmp_path: Path) -> None:
    hour = hour_dir(tmp_path)
    pq.write_table(records_to_table([new_row("kept")]), hour / "seg-1.parquet")
    (hour / ".tmp-seg-2.parquet").write_bytes(b"torn, footerless")
    (hour / "_scratch.parquet").write_bytes(b"not data")
    (tmp_path / "_spool").mkdir()
    (tmp_path / "_spool" / "p-1.parquet").write_bytes(b"not data")
    assert [p.name for p in capture_files(tmp_path)] == ["seg-1.parquet"]
    assert read_captures(tmp_path).column("capture_id").to_pylist() == ["kept"]


def test_sources_of_a_finished_merge_are_skipped(tmp_path: Path) -> None:
    hour = hour_dir(tmp_path)
    pq.write_table(records_to_table([new_row("a")]), hour / "seg-1.parquet")
    pq.write_table(records_to_table([new_row("a")]), hour / "merged-x.parquet")
    journal = hour / ".merge-x.json"
    journal.write_text('{"target": "merged-y.parquet", "sources": ["seg-1.parquet"]}')
    assert len(capture_files(tmp_path)) == 2  # target not in place: the journal is inert
    journal.write_text('{"target": "merged-x.parquet", "sources": ["seg-1.parquet"]}')
    assert [p.name for p in capture_files(tmp_path)] == ["merged-x.parquet"]


def test_an_empty_directory_is_an_empty_dataset(tmp_path: Path) -> None:
    table = read_captures(tmp_path)
    assert table.num_rows == 0 and table.schema.names == DATASET_SCHEMA.names
    assert open_captures(tmp_path).count_rows() == 0
    with pytest.raises(FileNotFoundError):
        read_captures(tmp_path / "missing")


def test_pandas_gets_plain_strings_bytes_and_utc_times(tmp_path: Path) -> None:
    pq.write_table(records_to_table([new_row("p")]), hour_dir(tmp_path) / "s.parquet")
    frame = read_captures_pandas(tmp_path)
    assert frame.loc[0, "request_body"] == b"{}"
    assert str(frame["captured_at"].dt.tz) == "UTC"
    assert frame.loc[0, "hour"] == "13" and frame["hour"].dtype.name != "category"


def test_columns_and_filters_are_passed_through(tmp_path: Path) -> None:
    hour = hour_dir(tmp_path)
    pq.write_table(records_to_table([new_row("x"), new_row("y")]), hour / "s.parquet")

    table = read_captures(tmp_path, columns=["capture_id"], filter=ds.field("capture_id") == "y")
    assert table.to_pylist() == [{"capture_id": "y"}]
    assert CAPTURE_SCHEMA.metadata == open_captures(tmp_path).schema.metadata
