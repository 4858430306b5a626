"""``rgs-shadow replay`` options: ``--jobs auto`` and the parsing of the others."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from replay import parallel
from shadow import cli_progress
from shadow.cli_replay import parse_jobs, parse_shard, parse_speed, replay
from tests._server import SECRET
from tests.replay.test_run import traffic
from wallet_core.errors import InputError


def test_jobs_auto_splits_a_large_capture_into_the_file_one_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = traffic(tmp_path, n=120)
    monkeypatch.setenv("RGS_SHADOW_SECRET", SECRET)
    printed = io.StringIO()
    summary = cli_progress.summary_table
    monkeypatch.setattr(cli_progress, "summary_table", lambda s, file: summary(s, file=printed))
    replay(capture, tmp_path / "one.parquet", jobs="1")
    assert "processes" not in printed.getvalue()
    monkeypatch.setattr(parallel, "AUTO_MIN_ROWS", 100)  # this capture counts as large
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    replay(capture, tmp_path / "auto.parquet")
    assert "processes (--jobs)" in printed.getvalue()
    assert pq.read_table(tmp_path / "auto.parquet").equals(pq.read_table(tmp_path / "one.parquet"))


def test_jobs_auto_keeps_a_small_capture_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = traffic(tmp_path, n=30)
    monkeypatch.setenv("RGS_SHADOW_SECRET", SECRET)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    printed = io.StringIO()
    summary = cli_progress.summary_table
    monkeypatch.setattr(cli_progress, "summary_table", lambda s, file: summary(s, file=printed))
    replay(capture, tmp_path / "auto.parquet")
    assert "30 callbacks" in printed.getvalue() and "processes" not in printed.getvalue()


@pytest.mark.parametrize("text", ["0", "-1", "two", "1.5", ""])
def test_a_bad_jobs_value_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError, match="--jobs"):
        parse_jobs(text)


def test_jobs_shard_and_speed_parse() -> None:
    assert parse_jobs("3") == 3
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    assert parse_speed("max") is None and parse_speed("4x") == 4.0
    with pytest.raises(InputError):
        parse_shard("5/4")
