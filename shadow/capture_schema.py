"""The capture file schema of PROTOCOL.md section 3, the one explicit definition.

Writers (the addon's compactor) and readers (replay, reports) both use
:data:`CAPTURE_SCHEMA`, so a file written by an older version with fewer columns
still reads, its missing columns as nulls.  Only ever add nullable columns.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["CAPTURE_COLUMNS", "CAPTURE_SCHEMA", "CAPTURE_SCHEMA_VERSION", "PARTITIONING_SCHEMA"]

CAPTURE_SCHEMA_VERSION = 1

CAPTURE_SCHEMA = pa.schema(
    [
        pa.field("capture_id", pa.string(), nullable=False),
        pa.field("captured_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("client_addr", pa.string()),
        pa.field("method", pa.string()),
        pa.field("path", pa.string()),
        pa.field("aggregator", pa.string()),
        pa.field("request_headers", pa.string()),
        pa.field("request_body", pa.binary()),
        pa.field("response_status", pa.int32()),
        pa.field("response_headers", pa.string()),
        pa.field("response_body", pa.binary()),
        pa.field("latency_ms", pa.float64()),
        pa.field("error", pa.string()),
        pa.field("transaction_id", pa.string()),
        pa.field("event", pa.string()),
        pa.field("network_duplicate", pa.bool_()),
        # Extensions beyond the contract's minimum (nullable, additive):
        pa.field("request_body_length", pa.int64()),
        pa.field("response_body_length", pa.int64()),
        pa.field("proxy_id", pa.string()),
    ],
    metadata={"rgs_shadow.capture_schema_version": str(CAPTURE_SCHEMA_VERSION)},
)

CAPTURE_COLUMNS = tuple(CAPTURE_SCHEMA.names)

#: Hive partition keys of a capture directory: ``date=YYYY-MM-DD/hour=HH``.
PARTITIONING_SCHEMA = pa.schema([pa.field("date", pa.string()), pa.field("hour", pa.string())])
