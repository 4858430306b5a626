"""The proxy's side of compaction: a real compactor process, drained on stop, restarted if killed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from shadow.capture_record import encode_record
from shadow.compactor_supervisor import CompactorSpec, CompactorSupervisor
from shadow.dataset import read_captures
from shadow.spool import SpoolWriter

from .test_compactor import record


def started(root: Path, errors: list[str]) -> tuple[SpoolWriter, CompactorSupervisor]:
    writer = SpoolWriter(root / "_spool", "p1", 1 << 20, 3600)
    writer.acquire()
    spec = CompactorSpec(str(root), "p1", 48, 3600.0, 600.0, poll_seconds=0.05)
    supervisor = CompactorSupervisor(writer, spec, report_error=errors.append, fsync_seconds=0.1)
    supervisor.start()
    return writer, supervisor


def test_stop_publishes_the_open_segment_and_waits_for_the_drain(tmp_path: Path) -> None:
    root, errors = tmp_path / "captures", []
    writer, supervisor = started(root, errors)
    for n in range(50):
        writer.append(encode_record(record(n, txid="same" if n in (3, 7) else None)))
    supervisor.stop()
    rows = read_captures(root).to_pylist()
    assert len(rows) == 50 and errors == []
    assert [r["capture_id"] for r in rows if r["network_duplicate"]] == ["c7"]
    assert list((root / "_spool").glob("p1-*")) == []


def test_a_killed_compactor_process_is_started_again_and_loses_nothing(tmp_path: Path) -> None:
    root, errors = tmp_path / "captures", []
    writer, supervisor = started(root, errors)
    writer.append(encode_record(record(1)))
    first = supervisor.process
    assert first is not None
    first.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 30
    while supervisor.process is first and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.append(encode_record(record(2)))
    supervisor.stop()
    assert any("starting it again" in e for e in errors)
    assert sorted(read_captures(root).column("capture_id").to_pylist()) == ["c1", "c2"]
