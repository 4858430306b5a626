"""``--jobs N``: the split replay writes the file the whole replay writes, and says no clearly."""

from __future__ import annotations

import base64
import io
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay import parallel
from replay.decision_schema import DECISION_SCHEMA
from replay.faults import FaultPlan
from replay.parallel import check_jobs, merge_in_order
from replay.run import ReplaySummary, run_replay
from wallet_core.errors import InputError

from .test_run import _replay_cli, options, traffic


@pytest.mark.parametrize("jobs", [2, 3])
def test_jobs_write_the_file_a_single_process_writes(tmp_path: Path, jobs: int) -> None:
    capture = traffic(tmp_path)
    whole = run_replay(options(capture, tmp_path / "one.parquet"))
    seen: list[int] = []
    split = run_replay(options(capture, tmp_path / "many.parquet", jobs=jobs), seen.append)
    one, many = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "many.parquet")
    assert one.num_rows == 300 and one.equals(many)  # seq included: numbered in captured order
    assert many.schema.metadata == one.schema.metadata
    assert (split.callbacks, split.outcomes, split.codes) == (
        whole.callbacks,
        whole.outcomes,
        whole.codes,
    )
    assert split.openings == whole.openings and sum(seen) == 300
    assert not list(tmp_path.glob(".many.parquet*"))  # the shards' files are gone


def test_a_workers_error_is_raised_in_the_parent(tmp_path: Path) -> None:
    capture = tmp_path / "capture" / "date=2026-11-25" / "hour=10"
    capture.mkdir(parents=True)
    (capture / "part.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a Parquet capture file"):
        run_replay(options(tmp_path / "capture", tmp_path / "d.parquet", jobs=2))
    assert not (tmp_path / "d.parquet").exists()


@pytest.mark.parametrize(
    ("extra", "clash"),
    [
        ({"target": "http://127.0.0.1:9"}, "--target"),
        ({"db_url": "sqlite:///x.db"}, "--db"),
        ({"shard": (1, 2)}, "--shard"),
        ({"faults": FaultPlan(duplicate_rate=0.2)}, "fault injection"),
    ],
)
def test_jobs_refuse_what_they_cannot_split(
    tmp_path: Path, extra: dict[str, object], clash: str
) -> None:
    with pytest.raises(InputError, match=f"cannot be combined with {clash}"):
        check_jobs(options(tmp_path, tmp_path / "d.parquet", jobs=2, **extra))
    check_jobs(options(tmp_path, tmp_path / "d.parquet", jobs=1, **extra))  # one process: fine
    with pytest.raises(InputError, match="--jobs: 0"):
        check_jobs(options(tmp_path, tmp_path / "d.parquet", jobs=0))


def test_cli_jobs_with_faults_is_one_line_and_exit_2(tmp_path: Path) -> None:
    capture = traffic(tmp_path, n=5)
    code, err = _replay_cli(tmp_path, str(capture), "--jobs", "2", "--drop-rate", "0.1")
    assert code == 2 and err.count("\n") == 1 and "--jobs 2 cannot be combined" in err


def _part(path: Path, keys: list[tuple[int, str]]) -> Path:
    """A decision file holding only the ordering columns that matter here, the rest null."""
    rows: dict[str, list[object]] = {name: [None] * len(keys) for name in DECISION_SCHEMA.names}
    rows["captured_at"] = [at for at, _ in keys]
    rows["capture_id"] = [cid for _, cid in keys]
    rows["seq"] = list(range(len(keys)))  # each shard numbers its own rows
    pq.write_table(pa.table(rows, schema=DECISION_SCHEMA), path)
    return path


def test_merge_streams_in_captured_order_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "_MERGE_BATCH", 3)  # many cuts, drained and refilled sources
    a = [(1, "a"), (2, "a"), (2, "c"), (5, "x"), (9, "a"), (9, "b"), (10, "a")]
    b = [(2, "b"), (3, "a"), (4, "a"), (4, "b"), (11, "z")]
    c = [(0, "q"), (12, "a")]
    parts = [
        _part(tmp_path / "a.parquet", a),
        _part(tmp_path / "b.parquet", b),
        _part(tmp_path / "c.parquet", c),
        _part(tmp_path / "empty.parquet", []),
    ]
    assert merge_in_order(parts, tmp_path / "out.parquet") == 14
    out = pq.read_table(tmp_path / "out.parquet")
    keys = list(
        zip(
            out.column("captured_at").cast(pa.int64()).to_pylist(),
            out["capture_id"].to_pylist(),
            strict=True,
        )
    )
    assert keys == sorted(a + b + c)
    assert out["seq"].to_pylist() == list(range(14))
    assert not (tmp_path / ".out.parquet.tmp").exists()


def test_merge_of_empty_shards_is_an_empty_file(tmp_path: Path) -> None:
    parts = [_part(tmp_path / "a.parquet", []), _part(tmp_path / "b.parquet", [])]
    assert merge_in_order(parts, tmp_path / "out.parquet") == 0
    assert pq.read_table(tmp_path / "out.parquet").schema.equals(DECISION_SCHEMA)


class _Stubborn(Exception):
    """An exception pickle cannot rebuild (its constructor wants two arguments)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a} {b}")


def test_a_worker_error_that_does_not_unpickle_still_arrives_as_its_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import replay.run

    def fail(*_: object) -> None:
        raise _Stubborn("disk", "full")

    monkeypatch.setattr(replay.run, "run_replay", fail)
    out = io.BytesIO()
    parallel.work(pickle.dumps(None), out)
    line = out.getvalue()
    assert line.startswith(b"=") and line.count(b"\n") == 1
    kind, error = pickle.loads(base64.b64decode(line[1:]))
    assert kind == "error" and isinstance(error, RuntimeError)
    assert str(error) == "_Stubborn: disk full"


def test_a_worker_reports_progress_then_its_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    import replay.run

    def fake(_options: object, advance: Callable[[int], None]) -> ReplaySummary:
        for _ in range(4_500):
            advance(1)
        return ReplaySummary(callbacks=4_500)

    monkeypatch.setattr(replay.run, "run_replay", fake)
    out = io.BytesIO()
    parallel.work(pickle.dumps(None), out)
    *progress, last = out.getvalue().splitlines()
    assert progress == [b"+2000", b"+2000", b"+500"]
    kind, summary = pickle.loads(base64.b64decode(last[1:]))
    assert kind == "ok" and summary.callbacks == 4_500


def test_a_worker_cut_short_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """Output that ends without a whole result line (a killed worker) fails the run."""
    import subprocess
    import sys

    script = "import sys; sys.stdout.write('+7\\n=c2hvcnQ'); sys.stdout.flush()"
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)]
    seen: list[int] = []
    try:
        [(kind, error)] = parallel._collect(workers, seen.append)
    finally:
        workers[0].wait()
    assert seen == [7] and kind == "error" and "stopped early" in str(error)


def test_workers_import_the_package_and_keep_a_lean_arrow_heap() -> None:
    from replay.parallel import worker_env

    env = worker_env({"PYTHONPATH": "/elsewhere", "HOME": "/h"})
    assert env["PYTHONPATH"].split(os.pathsep)[1] == "/elsewhere" and env["HOME"] == "/h"
    assert (Path(env["PYTHONPATH"].split(os.pathsep)[0]) / "replay" / "parallel.py").is_file()
    assert env["MIMALLOC_PURGE_DELAY"] == "0"
    assert worker_env({"MIMALLOC_PURGE_DELAY": "25"})["MIMALLOC_PURGE_DELAY"] == "25"


def test_auto_jobs_splits_only_a_large_splittable_capture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "usable_cores", lambda: 8)
    plain = options(tmp_path, tmp_path / "d.parquet")
    big = parallel.AUTO_MIN_ROWS
    assert parallel.auto_jobs(plain, big) == parallel.AUTO_MAX_JOBS == 4
    assert parallel.auto_jobs(plain, big - 1) == 1
    for clash in (
        {"target": "http://127.0.0.1:9"},
        {"db_url": "sqlite:///x.db"},
        {"shard": (1, 2)},
        {"faults": FaultPlan(duplicate_rate=0.1)},
    ):
        assert parallel.auto_jobs(options(tmp_path, tmp_path / "d.parquet", **clash), big) == 1
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    assert parallel.auto_jobs(plain, big) == 2
