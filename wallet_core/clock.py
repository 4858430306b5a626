"""Time as integer microseconds since the Unix epoch (UTC), the engine's only clock unit.

The engine never reads the system clock: the server passes "now", replay passes the
captured time.  Conversions here are integer-exact (no float seconds).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "from_us", "now_us", "timestamp_us", "to_us"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def now_us() -> int:
    """The system clock, for the live server only."""
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _US


def from_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def timestamp_us(text: str) -> int:
    """An RFC 3339 UTC timestamp (``2026-11-25T12:00:00Z``) as microseconds."""
    return to_us(datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00")))
