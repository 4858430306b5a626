"""The spool: framed appends, rotation, torn-tail recovery, locking, failed writes."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadow import spool as spool_module
from shadow.spool import (
    MAGIC,
    SpoolLockedError,
    SpoolWriter,
    frame,
    list_segments,
    read_segment,
)


def writer(tmp_path: Path, max_bytes: int = 1 << 20, max_seconds: float = 3600) -> SpoolWriter:
    w = SpoolWriter(tmp_path / "_spool", "p1", max_bytes, max_seconds)
    w.acquire()
    return w


def ready(tmp_path: Path) -> list[Path]:
    return list_segments(tmp_path / "_spool", "p1", ".ready")


def test_records_come_back_in_order_after_close(tmp_path: Path) -> None:
    w = writer(tmp_path)
    for i in range(100):
        w.append(f"record {i}".encode())
    w.close()
    [segment] = ready(tmp_path)
    contents = read_segment(segment)
    assert contents.records == [f"record {i}".encode() for i in range(100)]
    assert contents.torn == 0


def test_size_rotation_publishes_segments(tmp_path: Path) -> None:
    w = writer(tmp_path, max_bytes=4096)
    for i in range(200):
        w.append(b"x" * 100 + str(i).encode())
    w.close()
    segments = ready(tmp_path)
    assert len(segments) > 3
    records = [r for s in segments for r in read_segment(s).records]
    assert records == [b"x" * 100 + str(i).encode() for i in range(200)]


def test_age_rotation_only_when_due_and_not_when_empty(tmp_path: Path) -> None:
    w = writer(tmp_path, max_seconds=10)
    assert not w.rotate_if_due()  # nothing open
    w.append(b"a")
    assert not w.rotate_if_due(now=0.0)  # "now" before it was opened: not due
    assert w.rotate_if_due(now=1e12)
    assert len(ready(tmp_path)) == 1
    assert list_segments(tmp_path / "_spool", "p1", ".open") == []


def test_an_empty_segment_is_not_published(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.append(b"a")
    w.close()
    w.close()
    assert len(ready(tmp_path)) == 1


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 15])
def test_a_torn_tail_is_dropped_and_counted(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "p1-1.ready"
    path.write_bytes(MAGIC + frame(b"first") + frame(b"second record")[:cut])
    contents = read_segment(path)
    assert contents.records == [b"first"]
    assert contents.torn == 1 and contents.torn_bytes == cut


def test_a_corrupt_record_ends_the_segment(tmp_path: Path) -> None:
    bad = bytearray(frame(b"second"))
    bad[-1] ^= 0xFF
    path = tmp_path / "p1-1.ready"
    path.write_bytes(MAGIC + frame(b"first") + bytes(bad) + frame(b"third"))
    contents = read_segment(path)
    assert contents.records == [b"first"] and contents.torn == 1


def test_a_segment_without_magic_yields_nothing(tmp_path: Path) -> None:
    empty, foreign = tmp_path / "e.ready", tmp_path / "f.ready"
    empty.write_bytes(b"")
    foreign.write_bytes(b"hello world")
    assert read_segment(empty).records == [] and read_segment(empty).torn == 0
    assert read_segment(foreign).records == [] and read_segment(foreign).torn == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=20), st.data())
def test_any_truncation_yields_a_prefix_of_the_records(
    tmp_path_factory: pytest.TempPathFactory, payloads: list[bytes], data: st.DataObject
) -> None:
    whole = MAGIC + b"".join(frame(p) for p in payloads)
    cut = data.draw(st.integers(min_value=len(MAGIC), max_value=len(whole)))
    path = tmp_path_factory.mktemp("trunc") / "s.ready"
    path.write_bytes(whole[:cut])
    records = read_segment(path).records
    assert records == payloads[: len(records)]
    assert (cut == len(whole)) == (records == payloads)


def test_one_proxy_id_runs_once_per_directory(tmp_path: Path) -> None:
    w = writer(tmp_path)
    with pytest.raises(SpoolLockedError, match="p1"):
        writer(tmp_path)
    other = SpoolWriter(tmp_path / "_spool", "p2", 1 << 20, 60)
    other.acquire()
    w.release()
    writer(tmp_path).release()
    other.release()


def test_leftover_open_segments_become_ready(tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.append(b"left behind")  # no close: as after kill -9
    w.release()
    again = writer(tmp_path)
    assert again.recover_open() == 1
    [segment] = ready(tmp_path)
    assert read_segment(segment).records == [b"left behind"]


def test_a_failed_write_is_cut_back_so_later_records_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer(tmp_path)
    w.append(b"before")
    real_write = spool_module.os.write

    def half_then_full(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", half_then_full)
    with pytest.raises(OSError, match="No space"):
        w.append(b"lost record")
    monkeypatch.setattr(spool_module.os, "write", real_write)
    w.append(b"after")
    w.close()
    [segment] = ready(tmp_path)
    contents = read_segment(segment)
    assert contents.records == [b"before", b"after"] and contents.torn == 0
