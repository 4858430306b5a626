"""Divergences: findings of the diff engine, as values (PROTOCOL.md section 5).

A :class:`Divergence` names one kind of disagreement about one transaction, the
money at risk in minor units of ``currency``, what each side said, and the
capture ids that prove it.  :data:`DIVERGENCE_SCHEMA` is their Parquet form,
read by the reports.  :data:`KIND_ORDER` is the order files are sorted in (the
protocol's table order, extensions last), so a report can rely on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa

__all__ = ["DIVERGENCE_SCHEMA", "KIND_ORDER", "Divergence", "Kind"]


class Kind(StrEnum):
    MISSING_IN_WALLET = "MISSING_IN_WALLET"
    MISSING_IN_EXPORT = "MISSING_IN_EXPORT"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    STATUS_MISMATCH = "STATUS_MISMATCH"
    DOUBLE_APPLIED = "DOUBLE_APPLIED"
    LIVE_RESPONSE_MISMATCH = "LIVE_RESPONSE_MISMATCH"
    SLOW_RESPONSE = "SLOW_RESPONSE"
    #: Extension: a callback first seen later than the retry window after the export
    #: settled it (or after its round closed).  Inside the window lateness is normal.
    LATE_CALLBACK = "LATE_CALLBACK"


@dataclass(frozen=True, slots=True)
class Divergence:
    kind: Kind
    transaction_id: str | None
    round_id: str | None
    player_id: str | None
    currency: str | None
    amount_at_risk_minor: int
    wallet_says: str | None = None
    live_says: str | None = None
    export_says: str | None = None
    capture_ids: tuple[str, ...] = field(default=())
    event: str | None = None
    detail: str = ""
    #: When the first callback behind it was captured, microseconds since the epoch.
    at_us: int | None = None


DIVERGENCE_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("transaction_id", pa.string()),
        pa.field("round_id", pa.string()),
        pa.field("player_id", pa.string()),
        pa.field("currency", pa.string()),
        pa.field("amount_at_risk_minor", pa.int64(), nullable=False),
        pa.field("wallet_says", pa.string()),
        pa.field("live_says", pa.string()),
        pa.field("export_says", pa.string()),
        pa.field("capture_ids", pa.list_(pa.string())),
        pa.field("event", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
    ]
)

#: Sort rank of each kind in written files.
KIND_ORDER: dict[str, int] = {kind.value: rank for rank, kind in enumerate(Kind)}
