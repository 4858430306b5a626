"""The summary of one comparison: the numbers promotion and alerting decide on.

``summary.json`` is what ``promote`` reads for coverage (how long, how many
callbacks) and what ``reconcile`` posts to the alert webhook, so it carries the
money at risk per kind and currency, the coverage of each side, the live
latency distribution and the notes that are *not* divergences (external balance
movements, late callbacks inside the retry window, rows pending on either side).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from wallet_core.clock import from_us
from wallet_core.money import CurrencyTable

from .diff import DiffResult
from .divergence import KIND_ORDER, Divergence
from .options import CompareOptions

__all__ = ["HISTOGRAM_EDGES_MS", "build_summary", "capture_dir_of", "rfc3339"]

#: Upper edges of the latency histogram buckets (cumulative counts, Prometheus style);
#: the last bucket (``le_ms`` null) counts every answer.
HISTOGRAM_EDGES_MS = (50, 100, 250, 500, 1000, 2000, 3000, 5000, 10000)
SUMMARY_VERSION = 1


def rfc3339(us: int | None) -> str | None:
    if us is None:
        return None
    return from_us(us).isoformat(timespec="microseconds").replace("+00:00", "Z")


def capture_dir_of(decisions: pa.Table) -> str | None:
    meta = decisions.schema.metadata or {}
    raw = meta.get(b"rgs_shadow.capture_dir")
    return raw.decode() if raw else None


def _captured(capture_dir: str | None, decided: int) -> int:
    """Rows in the capture dataset when it is still there; otherwise what was decided."""
    if capture_dir is None or not Path(capture_dir).is_dir():
        return decided
    try:
        return int(ds.dataset(capture_dir, format="parquet", partitioning="hive").count_rows())
    except (pa.ArrowException, OSError):
        return decided


def _latency(decisions: pa.Table, opts: CompareOptions) -> dict[str, Any]:
    col = decisions.column("latency_ms").drop_null()
    values = np.asarray(col.to_numpy(), np.float64) if len(col) else np.zeros(0)
    if not len(values):
        return {
            "count": 0,
            "p50": None,
            "p95": None,
            "p99": None,
            "max": None,
            "over_3s": 0,
            "histogram": [],
        }
    p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
    histogram: list[dict[str, int | None]] = [
        {"le_ms": edge, "count": int((values <= edge).sum())} for edge in HISTOGRAM_EDGES_MS
    ]
    histogram.append({"le_ms": None, "count": int(len(values))})
    return {
        "count": int(len(values)),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": float(values.max()),
        "over_3s": int((values >= opts.slow_ms).sum()),
        "histogram": histogram,
    }


def _by_kind(divergences: list[Divergence]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str | None], list[int]] = {}
    for d in divergences:
        key = (d.kind.value, d.currency)
        groups.setdefault(key, [0, 0])
        groups[key][0] += 1
        groups[key][1] += d.amount_at_risk_minor
    return [
        {"kind": k, "currency": c, "count": n, "amount_at_risk_minor": risk}
        for (k, c), (n, risk) in sorted(
            groups.items(), key=lambda i: (KIND_ORDER[i[0][0]], i[0][1] or "")
        )
    ]


def build_summary(
    result: DiffResult,
    decisions: pa.Table,
    *,
    decisions_path: Path | None,
    settlement_path: Path | None,
    currencies: CurrencyTable,
    opts: CompareOptions,
) -> dict[str, Any]:
    """The ``summary.json`` document (see docs/compare.md for every field)."""
    capture_dir = capture_dir_of(decisions)
    coverage = dict(result.coverage)
    coverage["captured"] = _captured(capture_dir, coverage["decided"])
    totals: dict[str, int] = {}
    for d in result.divergences:
        if d.amount_at_risk_minor:
            code = d.currency or "?"
            totals[code] = totals.get(code, 0) + d.amount_at_risk_minor
    captured = decisions.column("captured_at").cast(pa.int64())
    first = pc.min(captured).as_py() if len(captured) else None
    last = pc.max(captured).as_py() if len(captured) else None
    return {
        "version": SUMMARY_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "decisions": str(decisions_path.resolve()) if decisions_path else None,
        "settlement": str(settlement_path.resolve()) if settlement_path else None,
        "capture_dir": str(Path(capture_dir).resolve()) if capture_dir else None,
        "currencies": {
            c: currencies.exponent(c) for c in sorted(result.currencies) if c in currencies
        },
        "coverage": coverage,
        "by_kind": _by_kind(result.divergences),
        "money_at_risk": bool(totals),
        "total_at_risk_minor": dict(sorted(totals.items())),
        "latency_ms": _latency(decisions, opts),
        "time_range": {"first": rfc3339(first), "last": rfc3339(last)},
        "notes": dict(sorted(result.notes.items())),
        "external_movements": int(result.notes.get("external_movements", 0)),
        "retry_window_hours": opts.retry_window_us / 3_600_000_000,
    }
