"""The ``[compare]`` options: thresholds the diff applies, with documented defaults.

Kept apart from the engine so that ``compare``, ``reconcile`` and the benchmark
read the same validated values, and an unknown key fails loudly (exit 2) instead
of silently comparing with a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wallet_core.errors import ConfigError

__all__ = ["CompareOptions", "parse_compare_options"]

HOUR_US = 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class CompareOptions:
    #: A live answer this slow (or none at all) is SLOW_RESPONSE; PROTOCOL.md says 3 s.
    slow_ms: float = 3000.0
    #: How long aggregators keep retrying; callbacks arriving later than this after the
    #: export settled them (or after their round closed) are LATE_CALLBACK.
    retry_window_us: int = 24 * HOUR_US


def parse_compare_options(table: Mapping[str, Any] | None) -> CompareOptions:
    """Validate the raw ``[compare]`` table; :class:`ConfigError` names the bad key."""
    table = dict(table or {})
    for key in table:
        if key not in ("slow_response_ms", "retry_window_hours"):
            raise ConfigError(f"compare.{key}: unknown key")
    slow = table.get("slow_response_ms", 3000)
    if isinstance(slow, bool) or not isinstance(slow, int | float) or slow <= 0:
        raise ConfigError("compare.slow_response_ms: must be a positive number")
    hours = table.get("retry_window_hours", 24)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
        raise ConfigError("compare.retry_window_hours: must be a non-negative number")
    return CompareOptions(float(slow), int(hours * HOUR_US))
