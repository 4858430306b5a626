"""Decision rows (PROTOCOL.md section 4) and their streaming Parquet writer.

Rows are buffered and written as row groups of ``batch_rows``, so a week of
decisions never sits in memory; the file is written under a hidden name and
renamed into place when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from wallet_core.dialects import Dialect
from wallet_core.model import Decision, Mode
from wallet_core.money import CurrencyTable

from .decision_schema import DECISION_COLUMNS, DECISION_SCHEMA
from .reader import Captured

__all__ = ["DecisionWriter", "decision_row"]


def decision_row(
    seq: int,
    row: Captured,
    decision: Decision,
    dialect: Dialect,
    currencies: CurrencyTable,
    currency_hint: str | None,
    mode: Mode | str,
    injected: str | None,
    ref_transaction_id: str | None,
) -> dict[str, Any]:
    """One decision row: the wallet's side from ``decision``, the live side from the capture."""
    currency = decision.currency or currency_hint
    live = dialect.read_answer(row.response_status, row.response_body, currency, currencies)
    return {
        "capture_id": row.capture_id,
        "aggregator": row.aggregator,
        "event": decision.event,
        "transaction_id": decision.transaction_id,
        "player_id": decision.player_id,
        "session_id": decision.session_id,
        "round_id": decision.round_id,
        "currency": currency,
        "amount_minor": decision.amount_minor,
        "outcome": decision.outcome.value,
        "code": decision.code.value,
        "http_status": decision.http_status,
        "balance_before_minor": decision.balance_before,
        "balance_after_minor": decision.balance_after,
        "live_status": row.response_status,
        "live_code": live.code,
        "live_balance_minor": live.balance_minor,
        "mode": str(mode),
        "seq": seq,
        "captured_at": row.captured_at_us,
        "ref_transaction_id": ref_transaction_id,
        "latency_ms": row.latency_ms,
        "error": row.error,
        "network_duplicate": row.network_duplicate,
        "flags": json.dumps(list(decision.flags)) if decision.flags else None,
        "injected": injected,
    }


class DecisionWriter:
    """Append rows; :meth:`close` publishes the file atomically."""

    def __init__(
        self, path: str | Path, *, metadata: dict[str, str] | None = None, batch_rows: int = 10_000
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp")
        schema = DECISION_SCHEMA.with_metadata(
            {f"rgs_shadow.{k}".encode(): v.encode() for k, v in (metadata or {}).items()}
        )
        self._schema = schema
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
        self._rows: list[dict[str, Any]] = []
        self._batch = batch_rows
        self.count = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        columns = {name: [r[name] for r in self._rows] for name in DECISION_COLUMNS}
        self._writer.write_table(pa.table(columns, schema=self._schema))
        self.count += len(self._rows)
        self._rows.clear()

    def close(self) -> None:
        self._flush()
        self._writer.close()
        with open(self._tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)
