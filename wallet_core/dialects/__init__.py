"""Aggregator dialects: wire formats behind one small interface (see :mod:`.base`)."""

from __future__ import annotations

from .base import Dialect, LiveAnswer, ParseError
from .generic import SIGNATURE_HEADER, GenericDialect

__all__ = [
    "DIALECTS",
    "SIGNATURE_HEADER",
    "Dialect",
    "GenericDialect",
    "LiveAnswer",
    "ParseError",
    "get_dialect",
]

#: Registry of dialects by the name used in configuration.
DIALECTS: dict[str, Dialect] = {"generic": GenericDialect()}


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name``; :class:`KeyError` names the known ones."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise KeyError(f"unknown dialect {name!r} (known: {', '.join(sorted(DIALECTS))})") from None
