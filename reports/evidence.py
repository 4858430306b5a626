"""Evidence of a divergence as people read it: decoded captures, decision and export rows.

Split from the model because it is the one part that turns raw bytes from traffic into
text: bodies are decoded as UTF-8 with replacement (a broken byte must not hide the
rest), cut at :data:`BODY_LIMIT`, and never parsed into numbers, so an amount shows
exactly as the aggregator sent it.  Header credentials were already redacted on reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wallet_core.money import format_amount

__all__ = ["BODY_LIMIT", "CaptureView", "Evidence", "capture_view", "decision_fields", "iso"]

#: Longest body text kept per capture; a body is at most 64 KiB but nobody reads that much.
BODY_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class CaptureView:
    """One captured callback, decoded for reading; credentials already redacted."""

    capture_id: str
    captured_at: str | None
    method: str | None
    path: str | None
    request_headers: tuple[tuple[str, str], ...]
    request_body: str
    response_status: int | None
    response_headers: tuple[tuple[str, str], ...]
    response_body: str
    latency_ms: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What each side recorded about one divergence."""

    captures: tuple[CaptureView, ...]
    #: The wallet's decision per capture, as ``(column, text)`` pairs.
    decisions: tuple[tuple[tuple[str, str], ...], ...]
    #: The export's rows for the transaction, as ``(column, text)`` pairs.
    exports: tuple[tuple[tuple[str, str], ...], ...]


def capture_view(row: Mapping[str, Any]) -> CaptureView:
    at = row.get("captured_at")
    status = row.get("response_status")
    return CaptureView(
        capture_id=row["capture_id"],
        captured_at=iso(at) if isinstance(at, datetime) else None,
        method=row.get("method"),
        path=row.get("path"),
        request_headers=tuple(row.get("request_headers") or ()),
        request_body=_body_text(row.get("request_body")),
        response_status=status,
        response_headers=tuple(row.get("response_headers") or ()),
        response_body=_body_text(row.get("response_body")),
        latency_ms=float_or_none(row.get("latency_ms")),
        error=row.get("error"),
    )


def decision_fields(
    row: Mapping[str, Any], currencies: Mapping[str, int]
) -> tuple[tuple[str, str], ...]:
    exponent = currencies.get(row.get("currency") or "", 0)
    out = []
    for name, value in row.items():
        if value is None:
            continue
        if name.endswith("_minor") and isinstance(value, int):
            text = f"{format_amount(value, exponent)} ({value} minor)"
        else:
            text = iso(value) if isinstance(value, datetime) else str(value)
        out.append((name, text))
    return tuple(out)


def _body_text(raw: bytes | None) -> str:
    if raw is None:
        return ""
    text = raw[: BODY_LIMIT + 1].decode("utf-8", errors="replace")
    if len(raw) > BODY_LIMIT:
        return text[:BODY_LIMIT] + f"\n[... {len(raw) - BODY_LIMIT} more bytes not shown]"
    return text


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
