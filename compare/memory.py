"""Freed numpy arrays reused during a comparison instead of unmapped and faulted in again.

glibc's malloc gives every block above its mmap threshold (at most 32 MiB) fresh
pages of its own and unmaps them on free.  The diff makes many short-lived arrays
of tens of megabytes (one per rule input, per key or per row), so at ten million
decisions it asked the kernel for about 1.7 GB more zeroed pages than it needed:
on a virtual machine, seconds of system time.  Inside :func:`reuse_freed_pages`
large blocks come from the heap and a freed one serves the next request; at the
end the heap is trimmed and the thresholds set back.  Arrow's buffers use their
own allocator and are not affected.  Other C libraries: nothing changes.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["hand_back", "reuse_freed_pages"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's defaults (its dynamic threshold stays off once set, which only matters for
#: blocks between 128 KiB and 32 MiB: they are mapped rather than taken from the heap).
_DEFAULT = 128 * 1024
_NEVER = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextmanager
def reuse_freed_pages() -> Iterator[None]:
    """Keep freed large blocks in the heap for reuse until the block ends (glibc only)."""
    libc = _glibc()
    if libc is None or not libc.mallopt(_M_MMAP_THRESHOLD, _NEVER):
        yield
        return
    libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT)
        libc.malloc_trim(0)


def hand_back() -> None:
    """Return the heap's free pages to the system now (the per-key arrays, once the
    diff is past them): inside :func:`reuse_freed_pages` they would otherwise stay
    in the process's peak.  Outside it glibc does this by itself."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
