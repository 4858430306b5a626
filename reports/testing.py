"""Fixed report inputs for tests, the benchmark and the docs screenshot.

A DIVERGENCES directory as ``rgs-shadow compare --out`` writes it (``divergences.parquet``,
``divergences.json``, ``summary.json``) plus the capture directory, decision file and
settlement export its summary points at.  Kept in the package (like ``wallet_core.testing``)
so the tests and ``bench/report.py`` describe the same layout in one place instead of each
hand-writing Parquet files.  Two payloads are hostile on purpose: every report must show
them as text.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from compare.divergence import Kind
from replay.decision_schema import DECISION_SCHEMA

from ._fixture_files import capture_row, summary, write_captures, write_outputs

__all__ = ["SCRIPT_PAYLOAD", "IMG_PAYLOAD", "FixtureDivergence", "write_fixture", "write_synthetic"]

SCRIPT_PAYLOAD = "<script>alert(1)</script>"
IMG_PAYLOAD = '"><img src=x onerror=alert(2)>'

#: The capture clock of the fixed data set: 2025-03-01 10:00 UTC.
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
CURRENCIES = {"EUR": 2, "JPY": 0, "BTC": 8}
EXPORT_COLUMNS = (
    "transaction_id,round_id,player_id,session_id,event,amount,currency,status,settled_at,"
    "ref_transaction_id"
).split(",")


@dataclass(frozen=True)
class FixtureDivergence:
    """One divergence of the fixed set and the callback behind it."""

    kind: Kind
    tx: str
    round_id: str
    player: str
    currency: str
    at_risk: int
    minute: int
    event: str = "bet"
    amount: str = "10.00"
    wallet: str | None = None
    live: str | None = None
    export: str | None = None
    detail: str = ""
    latency_ms: float = 85.0
    error: str | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)


FIXTURE: tuple[FixtureDivergence, ...] = (
    FixtureDivergence(
        Kind.DOUBLE_APPLIED,
        "tx-0007",
        "r-03",
        "p-alice",
        "EUR",
        1000,
        5,
        wallet="APPLIED once",
        live="200 OK twice",
        export="SETTLED 10.00",
        detail="live wallet debited the retry again",
    ),
    FixtureDivergence(
        Kind.MISSING_IN_WALLET,
        "tx-0009",
        "r-04",
        "p-bob",
        "EUR",
        2550,
        12,
        event="win",
        amount="25.50",
        wallet=None,
        live="200 OK",
        export="SETTLED 25.50",
        detail="win never reached the wallet",
    ),
    FixtureDivergence(
        Kind.AMOUNT_MISMATCH,
        "tx-0012",
        "r-05",
        "p-alice",
        "EUR",
        500,
        20,
        event="win",
        amount="15.00",
        wallet="APPLIED 15.00",
        live="200 OK",
        export="SETTLED 20.00",
        detail="export says 20.00",
    ),
    FixtureDivergence(
        Kind.STATUS_MISMATCH,
        "tx-0015",
        "r-06",
        "p-carol",
        "JPY",
        300,
        31,
        amount="300",
        wallet="REJECTED INSUFFICIENT_FUNDS",
        live="200 OK",
        export="SETTLED 300",
        detail="wallet would refuse a settled bet",
    ),
    FixtureDivergence(
        Kind.LIVE_RESPONSE_MISMATCH,
        "tx-0020",
        "r-08",
        SCRIPT_PAYLOAD,
        "EUR",
        0,
        44,
        wallet="REJECTED PLAYER_BLOCKED",
        live="200 OK",
        export="SETTLED 10.00",
        detail=f"game {IMG_PAYLOAD}",
        extra_body={"game_id": SCRIPT_PAYLOAD, "note": IMG_PAYLOAD},
    ),
    FixtureDivergence(
        Kind.SLOW_RESPONSE,
        "tx-0021",
        "r-08",
        "p-dave",
        "EUR",
        0,
        47,
        wallet="APPLIED OK",
        live="200 OK after 4200 ms",
        export="SETTLED 10.00",
        detail="answered in 4200 ms",
        latency_ms=4200.0,
    ),
    FixtureDivergence(
        Kind.MISSING_IN_EXPORT,
        "tx-0030",
        "r-10",
        "p-erin",
        "BTC",
        150000,
        63,
        amount="0.00150000",
        wallet="APPLIED 0.00150000",
        live="200 OK",
        export=None,
        detail="wallet moved money the export lacks",
    ),
    FixtureDivergence(
        Kind.CURRENCY_MISMATCH,
        "tx-0031",
        "r-11",
        "p-erin",
        "EUR",
        2000,
        70,
        amount="20.00",
        wallet="APPLIED EUR 20.00",
        live="200 OK",
        export="SETTLED USD 20.00",
        detail="export in USD",
    ),
    FixtureDivergence(
        Kind.DOUBLE_APPLIED,
        "tx-0040",
        "r-12",
        "p-bob",
        "EUR",
        5000,
        88,
        event="win",
        amount="50.00",
        wallet="APPLIED once",
        live="200 OK twice",
        export="SETTLED 50.00",
        detail="win credited twice live",
    ),
    FixtureDivergence(
        Kind.SLOW_RESPONSE,
        "tx-0041",
        "r-12",
        "p-bob",
        "EUR",
        0,
        95,
        wallet="APPLIED OK",
        live="no answer",
        export="SETTLED 10.00",
        detail="aggregator gave up after 5000 ms",
        latency_ms=5000.0,
        error="client gave up",
    ),
)

#: Latencies of the fixed set's uncited captures (all fast).
_FAST = (40.0, 55.0, 60.0, 75.0, 90.0, 120.0, 150.0, 240.0, 480.0, 950.0)


def write_fixture(root: Path, divergences: Sequence[FixtureDivergence] = FIXTURE) -> Path:
    """Write the fixed data set under ``root``; return the DIVERGENCES directory."""
    captures: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    exports: list[dict[str, str]] = []
    rows: list[dict[str, Any]] = []
    for n, fx in enumerate(divergences):
        at = T0 + timedelta(minutes=fx.minute)
        cid = f"c-{n:04d}"
        exponent = CURRENCIES[fx.currency]
        body = {
            "event": fx.event,
            "transaction_id": fx.tx,
            "session_id": f"s-{fx.player[:8]}",
            "player_id": fx.player,
            "currency": fx.currency,
            "amount": fx.amount,
            "round_id": fx.round_id,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            **fx.extra_body,
        }
        response = (
            None
            if fx.error
            else {
                "status": "OK",
                "balance": "90.00",
                "currency": fx.currency,
                "transaction_id": fx.tx,
            }
        )
        captures.append(capture_row(cid, at, body, fx.latency_ms, fx.error, response))
        amount_minor = int(fx.amount.replace(".", ""))
        rejected = (fx.wallet or "").startswith("REJECTED")
        if fx.wallet is not None:
            decisions.append(
                {
                    "capture_id": cid,
                    "aggregator": "acme",
                    "event": fx.event,
                    "transaction_id": fx.tx,
                    "player_id": fx.player,
                    "session_id": body["session_id"],
                    "round_id": fx.round_id,
                    "currency": fx.currency,
                    "amount_minor": amount_minor,
                    "outcome": "REJECTED" if rejected else "APPLIED",
                    "code": fx.wallet.split()[1] if rejected and fx.wallet else "OK",
                    "http_status": 402 if rejected else 200,
                    "balance_before_minor": 100 * 10**exponent,
                    "balance_after_minor": 100 * 10**exponent - (0 if rejected else amount_minor),
                    "live_status": 200,
                    "live_code": "OK",
                    "live_balance_minor": 90 * 10**exponent,
                    "mode": "shadow",
                    "seq": n,
                    "captured_at": at,
                    "latency_ms": fx.latency_ms,
                }
            )
        if fx.export is not None:
            exports.append(
                {
                    "transaction_id": fx.tx,
                    "round_id": fx.round_id,
                    "player_id": fx.player,
                    "session_id": body["session_id"],
                    "event": fx.event,
                    "amount": fx.amount,
                    "currency": fx.currency,
                    "status": "SETTLED",
                    "settled_at": (at + timedelta(seconds=2)).isoformat().replace("+00:00", "Z"),
                    "ref_transaction_id": "",
                }
            )
        rows.append(
            {
                "kind": str(fx.kind),
                "transaction_id": fx.tx,
                "round_id": fx.round_id,
                "player_id": fx.player,
                "currency": fx.currency,
                "amount_at_risk_minor": fx.at_risk,
                "wallet_says": fx.wallet,
                "live_says": fx.live,
                "export_says": fx.export,
                "capture_ids": [cid],
                "event": fx.event,
                "detail": fx.detail,
                "at": at,
            }
        )
    for n, latency in enumerate(_FAST):
        at = T0 + timedelta(minutes=3 + 9 * n)
        body = {
            "event": "balance",
            "session_id": "s-quiet",
            "player_id": "p-quiet",
            "currency": "EUR",
            "timestamp": at.isoformat(),
        }
        captures.append(capture_row(f"q-{n:04d}", at, body, latency, None, {"status": "OK"}))
    write_captures(root / "captures", captures)
    pq.write_table(
        pa.Table.from_pylist(decisions, schema=DECISION_SCHEMA), root / "decisions.parquet"
    )
    with (root / "export.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(exports)
    latencies = [c["latency_ms"] for c in captures]
    times = [c["captured_at"] for c in captures]
    out = root / "divergences"
    write_outputs(out, rows, summary(root, CURRENCIES, rows, latencies, len(captures), times))
    return out


def write_synthetic(root: Path, count: int, *, seed: int = 7) -> Path:
    """Write ``count`` random divergences (with their captures) for the benchmark.

    Ids are random hex so the page's data compresses like real traffic, not like a
    repeated template.
    """
    rng = random.Random(seed)
    kinds = list(Kind)
    players = [f"p-{rng.getrandbits(40):010x}" for _ in range(max(10, count // 50))]
    fixtures = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        currency = rng.choice(["EUR", "EUR", "EUR", "JPY", "BTC"])
        slow = kind is Kind.SLOW_RESPONSE
        at_risk = (
            0
            if kind in (Kind.SLOW_RESPONSE, Kind.LIVE_RESPONSE_MISMATCH)
            else (rng.randrange(1, 50000))
        )
        amount = "12.50" if currency == "EUR" else ("1250" if currency == "JPY" else "0.00012500")
        fixtures.append(
            FixtureDivergence(
                kind,
                f"tx-{rng.getrandbits(64):016x}",
                f"r-{rng.getrandbits(32):08x}",
                rng.choice(players),
                currency,
                at_risk,
                minute=(n * 1440) // max(1, count),
                amount=amount,
                wallet="APPLIED OK",
                live="200 OK",
                export="SETTLED",
                detail=f"synthetic divergence {n}",
                latency_ms=4100.0 if slow else 80.0 + n % 700,
            )
        )
    return write_fixture(root, fixtures)
