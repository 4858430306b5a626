"""The decision file schema of PROTOCOL.md section 4 (written by replay, read by compare).

The contract's columns come first; the extensions after them are what compare and
the reports need to explain a divergence without reopening the capture
(``ref_transaction_id`` pairs refunds with bets, ``flags`` carries ``late``,
``tombstone`` and totals mismatches, ``injected`` marks fault-injection rows).
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["DECISION_COLUMNS", "DECISION_SCHEMA"]

DECISION_SCHEMA = pa.schema(
    [
        pa.field("capture_id", pa.string()),
        pa.field("aggregator", pa.string()),
        pa.field("event", pa.string()),
        pa.field("transaction_id", pa.string()),
        pa.field("player_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("round_id", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("amount_minor", pa.int64()),
        pa.field("outcome", pa.string()),
        pa.field("code", pa.string()),
        pa.field("http_status", pa.int32()),
        pa.field("balance_before_minor", pa.int64()),
        pa.field("balance_after_minor", pa.int64()),
        pa.field("live_status", pa.int32()),
        pa.field("live_code", pa.string()),
        pa.field("live_balance_minor", pa.int64()),
        pa.field("mode", pa.string()),
        # Extensions (nullable, additive):
        pa.field("seq", pa.int64()),
        pa.field("captured_at", pa.timestamp("us", tz="UTC")),
        pa.field("ref_transaction_id", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("error", pa.string()),
        pa.field("network_duplicate", pa.bool_()),
        pa.field("flags", pa.string()),
        pa.field("injected", pa.string()),
    ]
)

DECISION_COLUMNS = tuple(DECISION_SCHEMA.names)
