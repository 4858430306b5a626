"""One malloc heap for a comparison: freed blocks reused, not unmapped and faulted in again.

A comparison at ten million decisions allocates and frees several gigabytes of
short-lived buffers (decoded pages, the id hash table, per-key and per-row numpy
arrays) against a peak of about 3.5 GB.  Left to themselves, Arrow's allocator
hands freed pages back to the system and glibc maps every block above 32 MiB
afresh, so most of those gigabytes were new pages the kernel had to zero: on a
virtual machine, about half of the CPU time.  Inside :func:`reuse_freed_pages`
Arrow allocates from malloc too, and malloc keeps freed blocks in its heap for
the next request, Arrow's or numpy's (:func:`hand_back` trims it at chosen
points, to bound the peak).  At the end the pool and the thresholds are set
back and the heap is trimmed.  Other C libraries: nothing changes.
"""

from __future__ import annotations

import ctypes
import importlib
import platform
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

__all__ = ["hand_back", "huge_pages", "reuse_freed_pages"]

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
    """Arrow and numpy share malloc's heap, which keeps freed blocks (glibc only).

    Arrow's default pool is process-wide: buffers made inside the block stay valid
    after it (each keeps its pool), and other threads allocating meanwhile use
    malloc too.
    """
    huge = huge_pages(False)
    try:
        libc = _glibc()
        if libc is None or not libc.mallopt(_M_MMAP_THRESHOLD, _NEVER):
            yield
            return
        libc.mallopt(_M_TRIM_THRESHOLD, _NEVER)
        pool = pa.default_memory_pool()
        pa.set_memory_pool(pa.system_memory_pool())
        try:
            yield
        finally:
            pa.set_memory_pool(pool)
            libc.mallopt(_M_MMAP_THRESHOLD, _DEFAULT)
            libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT)
            libc.malloc_trim(0)
    finally:
        huge_pages(huge)


def huge_pages(wanted: bool) -> bool:
    """Whether numpy advises huge pages for its big arrays from now on; returns the
    previous setting (False where numpy has no such switch)."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            switch = getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
        except ImportError:
            continue
        if switch is not None:
            return bool(switch(wanted))
    return False


def hand_back() -> None:
    """Return the heap's free pages to the system now: inside :func:`reuse_freed_pages`
    they would otherwise stay in the process's peak.  Outside it glibc trims by itself."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
