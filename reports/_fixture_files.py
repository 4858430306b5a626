"""File writers behind :mod:`reports.testing`: captures, outputs and summary as compare writes them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from compare.divergence import DIVERGENCE_SCHEMA
from shadow.capture_schema import CAPTURE_SCHEMA

__all__ = ["LATENCY_BUCKETS_MS", "capture_row", "summary", "write_captures", "write_outputs"]

LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2000, 3000, 5000, 10000)


def capture_row(
    cid: str,
    at: datetime,
    body: dict[str, Any],
    latency: float,
    error: str | None,
    response: dict[str, Any] | None,
) -> dict[str, Any]:
    raw = json.dumps(body, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "x-rgs-signature": "sha256=" + "ab" * 32,
        "authorization": "Bearer not-for-reports",
    }
    return {
        "capture_id": cid,
        "captured_at": at,
        "client_addr": "10.0.0.7:51234",
        "method": "POST",
        "path": "/rgs/acme",
        "aggregator": "acme",
        "request_headers": json.dumps(headers),
        "request_body": raw,
        "response_status": None if response is None else 200,
        "response_headers": json.dumps({"content-type": "application/json"}),
        "response_body": None if response is None else json.dumps(response).encode(),
        "latency_ms": latency,
        "error": error,
        "transaction_id": body.get("transaction_id"),
        "event": body.get("event"),
        "network_duplicate": False,
    }


def write_captures(capture_dir: Path, rows: Sequence[dict[str, Any]]) -> None:
    by_hour: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        at: datetime = row["captured_at"]
        by_hour.setdefault((at.strftime("%Y-%m-%d"), at.strftime("%H")), []).append(row)
    for (date, hour), part in by_hour.items():
        folder = capture_dir / f"date={date}" / f"hour={hour}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(part, schema=CAPTURE_SCHEMA)
        pq.write_table(table, folder / "part-0.parquet", compression="zstd")
        (folder / ".part-1.parquet.tmp").write_bytes(b"half written")  # must be ignored


def _histogram(latencies: Sequence[float]) -> list[dict[str, Any]]:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for value in latencies:
        index = next(
            (i for i, le in enumerate(LATENCY_BUCKETS_MS) if value <= le), len(LATENCY_BUCKETS_MS)
        )
        counts[index] += 1
    edges: list[int | None] = [*LATENCY_BUCKETS_MS, None]
    cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]  # as compare writes it
    return [{"le_ms": le, "count": n} for le, n in zip(edges, cumulative, strict=True)]


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def write_outputs(out: Path, divergences: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(divergences, schema=DIVERGENCE_SCHEMA), out / "divergences.parquet"
    )
    as_json = [{**d, "at": d["at"].isoformat().replace("+00:00", "Z")} for d in divergences]
    (out / "divergences.json").write_text(json.dumps(as_json, indent=1))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def summary(
    root: Path,
    currencies: dict[str, int],
    divergences: list[dict[str, Any]],
    latencies: list[float],
    captured: int,
    times: list[datetime],
) -> dict[str, Any]:
    by_kind: dict[tuple[str, str], list[int]] = {}
    totals: dict[str, int] = {}
    for d in divergences:
        slot = by_kind.setdefault((d["kind"], d["currency"]), [0, 0])
        slot[0] += 1
        slot[1] += d["amount_at_risk_minor"]
        totals[d["currency"]] = totals.get(d["currency"], 0) + d["amount_at_risk_minor"]
    return {
        "version": 1,
        "generated_at": "2025-03-01T13:00:00Z",
        "decisions": str(root / "decisions.parquet"),
        "settlement": str(root / "export.csv"),
        "capture_dir": str(root / "captures"),
        "currencies": currencies,
        "coverage": {
            "captured": captured,
            "decided": captured - 1,
            "matched": captured - 4,
            "unmatched_wallet": 1,
            "unmatched_export": 2,
        },
        "by_kind": [
            {"kind": k, "currency": c, "count": n, "amount_at_risk_minor": a}
            for (k, c), (n, a) in sorted(by_kind.items())
        ],
        "money_at_risk": any(v > 0 for v in totals.values()),
        "total_at_risk_minor": totals,
        "latency_ms": {
            "count": len(latencies),
            "p50": _percentile(latencies, 0.5),
            "p95": _percentile(latencies, 0.95),
            "p99": _percentile(latencies, 0.99),
            "max": max(latencies),
            "over_3s": sum(1 for v in latencies if v >= 3000),
            "histogram": _histogram(latencies),
        },
        "time_range": {
            "first": min(times).isoformat().replace("+00:00", "Z"),
            "last": max(times).isoformat().replace("+00:00", "Z"),
        },
    }
