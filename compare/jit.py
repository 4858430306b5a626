"""numba's compiler as typed decorators: compiled loops that release the GIL, cached on disk.

The compiled loops (:mod:`compare.idkernels`, :mod:`compare.csvkernels`) run on
threads beside each other (``nogil``), and are compiled once per machine: numba
keeps the machine code beside the module (``cache=True``), so later processes
only load it (about 0.1 s per module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["inline", "kernel"]

F = TypeVar("F", bound=Callable[..., Any])


def kernel(fn: F) -> F:
    """A loop compiled to machine code, callable from Python, releasing the GIL."""
    return cast(F, numba.njit(nogil=True, cache=True)(fn))


def inline(fn: F) -> F:
    """A helper of kernels, inlined into them (not meant to be called from Python)."""
    return cast(F, numba.njit(inline="always", cache=True)(fn))
