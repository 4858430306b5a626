"""The write-ahead spool: length-prefixed records appended to segment files.

Why a spool and not Parquet straight away: a Parquet file is unreadable until
its footer is written, so a killed writer loses everything it held.  An append
of one framed record with ``os.write`` costs about a microsecond and, once it
returns, the bytes are in the kernel and survive ``kill -9`` of the proxy.

Layout, all under ``CAPTURE_DIR/_spool/`` (the leading ``_`` keeps dataset
readers out)::

    {proxy_id}-{opened_us:016d}-{seq:06d}.open    being appended to
    {proxy_id}-{opened_us:016d}-{seq:06d}.ready   closed, waiting for the compactor
    {proxy_id}.lock                               flock held by the running proxy

A segment starts with :data:`MAGIC`; each record is ``<u32 length><u32 crc32>``
followed by the payload.  A record cut short by a crash (or garbage after a
power loss) fails the length or CRC check: it and anything after it is dropped
and counted as one torn tail.  Rotation renames ``.open`` to ``.ready``.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAGIC",
    "SPOOL_DIRNAME",
    "SegmentContents",
    "SpoolLockedError",
    "SpoolWriter",
    "list_segments",
    "read_segment",
]

SPOOL_DIRNAME = "_spool"
MAGIC = b"RGSSPOOL1\n"
_FRAME = struct.Struct("<II")
OPEN_SUFFIX = ".open"
READY_SUFFIX = ".ready"


class SpoolLockedError(RuntimeError):
    """Another running proxy holds the spool of this proxy id."""


@dataclass(frozen=True, slots=True)
class SegmentContents:
    """The complete records of one segment and whether a torn tail was dropped."""

    records: list[bytes]
    torn: int
    torn_bytes: int


def frame(payload: bytes) -> bytes:
    """One record as written to disk."""
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def read_segment(path: Path) -> SegmentContents:
    """Every complete record of ``path``; a torn or corrupt tail is dropped and counted."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        # A segment killed between creation and the magic write is empty; anything
        # else without the magic is not ours and is reported whole as torn.
        return SegmentContents([], 1 if data else 0, len(data))
    records: list[bytes] = []
    pos, end = len(MAGIC), len(data)
    while pos < end:
        if end - pos < _FRAME.size:
            break
        length, crc = _FRAME.unpack_from(data, pos)
        start = pos + _FRAME.size
        if end - start < length or zlib.crc32(data[start : start + length]) != crc:
            break
        records.append(data[start : start + length])
        pos = start + length
    torn_bytes = end - pos
    return SegmentContents(records, 1 if torn_bytes else 0, torn_bytes)


def list_segments(spool_dir: Path, proxy_id: str, suffix: str) -> list[Path]:
    """This proxy's segments with ``suffix``, oldest first (names sort by open time)."""
    if not spool_dir.is_dir():
        return []
    prefix = f"{proxy_id}-"
    return sorted(
        p for p in spool_dir.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)
    )


class SpoolWriter:
    """Appends framed records to the open segment and rotates it by age or size.

    ``append`` is called on mitmproxy's event loop, ``rotate_if_due`` and
    ``sync`` from the proxy's housekeeping thread; one uncontended lock keeps them apart.
    An ``OSError`` from ``append`` is the caller's to report: the segment is cut
    back to its last whole record first, so one failed write never tears the
    records that follow it.
    """

    def __init__(self, spool_dir: Path, proxy_id: str, max_bytes: int, max_seconds: float) -> None:
        self.spool_dir = spool_dir
        self.proxy_id = proxy_id
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._seq = 0
        self._lock_fd: int | None = None

    # -- lifecycle -------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the proxy-id lock; :class:`SpoolLockedError` when another proxy has it."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.spool_dir / f"{self.proxy_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolLockedError(
                f"another capture with proxy id {self.proxy_id!r} is running on {self.spool_dir}"
            ) from None
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def recover_open(self) -> int:
        """Turn segments left ``.open`` by a previous run into ``.ready``; their count."""
        leftovers = list_segments(self.spool_dir, self.proxy_id, OPEN_SUFFIX)
        for path in leftovers:
            os.replace(path, path.with_suffix(READY_SUFFIX))
        return len(leftovers)

    def close(self) -> None:
        """Close and publish the open segment (rotate without opening a new one)."""
        with self._lock:
            self._close_locked()

    # -- hot path ----------------------------------------------------------------------

    def append(self, payload: bytes) -> None:
        """Write one record; raises OSError when the disk refuses it."""
        data = frame(payload)
        with self._lock:
            if self._fd is None:
                self._open_locked()
            elif self._size >= self.max_bytes:
                self._close_locked()
                self._open_locked()
            fd = self._fd
            assert fd is not None
            try:
                written = os.write(fd, data)
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                self._cut_back_locked()
                raise
            self._size += len(data)

    # -- housekeeping (the proxy's CompactorSupervisor thread) -------------------------

    def rotate_if_due(self, now: float | None = None) -> bool:
        """Publish the open segment when it is old or big enough; True when it rotated."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._fd is None or self._size <= len(MAGIC):
                return False
            if self._size < self.max_bytes and now - self._opened < self.max_seconds:
                return False
            self._close_locked()
            return True

    def sync(self) -> None:
        """fsync the open segment (for power loss; ``kill -9`` needs none)."""
        with self._lock:
            fd = os.dup(self._fd) if self._fd is not None else None
        if fd is not None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # -- internals ---------------------------------------------------------------------

    def _open_locked(self) -> None:
        self._seq += 1
        name = f"{self.proxy_id}-{time.time_ns() // 1000:016d}-{self._seq:06d}{OPEN_SUFFIX}"
        path = self.spool_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            os.write(fd, MAGIC)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._fd, self._path, self._size, self._opened = fd, path, len(MAGIC), time.monotonic()

    def _close_locked(self) -> None:
        if self._fd is None or self._path is None:
            return
        fd, path = self._fd, self._path
        self._fd, self._path = None, None
        try:
            os.fsync(fd)
        except OSError:
            pass  # the rename below still publishes what the kernel holds
        os.close(fd)
        if self._size <= len(MAGIC):
            path.unlink(missing_ok=True)
        else:
            os.replace(path, path.with_suffix(READY_SUFFIX))

    def _cut_back_locked(self) -> None:
        """After a failed write: drop its partial bytes, or give up the segment."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            # Cannot cut: publish the segment as it is (the reader drops the torn
            # tail) so that later records go to a fresh segment.
            try:
                self._close_locked()
            except OSError:
                self._fd, self._path = None, None
