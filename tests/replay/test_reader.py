"""The capture reader: order across files, the one schema, filters, counts, bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.reader import CaptureReader
from shadow.capture_schema import CAPTURE_SCHEMA
from wallet_core.errors import InputError

T0 = 1_795_000_000 * 1_000_000  # 2026-11-18 11:06:40 UTC
HOUR = Path("date=2026-11-18") / "hour=11"


def _file(path: Path, rows: list[tuple[str, int, str | None]], **extra: pa.Array) -> None:
    """A capture file with only the required columns (plus ``extra``): (id, time, aggregator)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        "capture_id": pa.array([r[0] for r in rows], pa.string()),
        "captured_at": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "aggregator": pa.array([r[2] for r in rows], pa.string()),
        "request_headers": pa.array(['{"X-A": "1"}'] * len(rows), pa.string()),
        "request_body": pa.array([b"{}"] * len(rows), pa.binary()),
        **extra,
    }
    pq.write_table(pa.table(columns), path)


def test_rows_of_several_files_come_in_captured_order(tmp_path: Path) -> None:
    _file(tmp_path / HOUR / "b.parquet", [("c3", T0 + 3, "x"), ("c1", T0 + 1, "x")])
    _file(tmp_path / HOUR / "a.parquet", [("c2", T0 + 2, "y"), ("c0", T0 + 2, "y")])
    rows = list(CaptureReader(tmp_path))
    assert [r.capture_id for r in rows] == ["c1", "c0", "c2", "c3"]  # time, then id
    assert rows[0].headers == {"x-a": "1"}


def test_a_column_the_file_lacks_reads_as_null(tmp_path: Path) -> None:
    _file(tmp_path / HOUR / "a.parquet", [("c1", T0, "x")])
    [row] = CaptureReader(tmp_path).rows()
    assert (row.response_status, row.response_body, row.latency_ms, row.error) == (
        None,
        None,
        None,
        None,
    )
    assert row.network_duplicate is False


def test_a_column_of_another_type_is_cast_to_the_schema(tmp_path: Path) -> None:
    _file(
        tmp_path / HOUR / "a.parquet",
        [("c1", T0, "x")],
        response_status=pa.array([200], pa.int64()),
        latency_ms=pa.array([3], pa.int32()),
    )
    [row] = CaptureReader(tmp_path).rows()
    assert (row.response_status, row.latency_ms) == (200, 3.0)
    assert CAPTURE_SCHEMA.field("response_status").type == pa.int32()


def test_a_column_that_cannot_be_cast_is_an_input_error(tmp_path: Path) -> None:
    _file(
        tmp_path / HOUR / "a.parquet",
        [("c1", T0, "x")],
        response_status=pa.array(["two hundred"], pa.string()),
    )
    with pytest.raises(InputError, match="unreadable capture file") as caught:
        list(CaptureReader(tmp_path).rows())
    assert "\n" not in str(caught.value)


def test_filters_and_counts(tmp_path: Path) -> None:
    _file(tmp_path / HOUR / "a.parquet", [("c1", T0 + 1, "x"), ("c2", T0 + 2, None)])
    _file(tmp_path / HOUR / "b.parquet", [("c3", T0 + 3, "y"), ("c4", T0 + 4, "x")])
    _file(tmp_path / "loose.parquet", [("c9", T0, "x")])  # outside date=/hour=: not data
    every = CaptureReader(tmp_path)
    assert every.count() == 4 == len(list(every))
    of_x = CaptureReader(tmp_path, aggregator="x")
    assert [r.capture_id for r in of_x] == ["c1", "c4"] and of_x.count() == 2
    window = CaptureReader(tmp_path, since_us=T0 + 2, until_us=T0 + 4)
    assert [r.capture_id for r in window] == ["c2", "c3"] and window.count() == 2
    later = CaptureReader(tmp_path, since_us=T0 + 3_600_000_000)  # the hour is pruned
    assert later.hours == [] and later.count() == 0


def test_keep_drops_rows_before_they_are_built(tmp_path: Path) -> None:
    _file(tmp_path / HOUR / "a.parquet", [("c1", T0 + 1, "x"), ("c2", T0 + 2, "y")])
    kept = CaptureReader(tmp_path).rows(keep=lambda cid, agg, body: agg == "y")
    assert [r.capture_id for r in kept] == ["c2"]


def test_replay_does_not_import_pandas() -> None:
    """pyarrow.dataset pulls in pandas (about 30 MB in every replay and --jobs worker)."""
    probe = "import sys, replay.run, replay.parallel; print('pandas' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
