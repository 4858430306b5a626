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

from .decision_schema import DECISION_SCHEMA
from .reader import Captured

__all__ = ["DecisionRow", "DecisionWriter", "decision_row"]

#: One row's values in :data:`~replay.decision_schema.DECISION_COLUMNS` order.
DecisionRow = tuple[Any, ...]


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
) -> DecisionRow:
    """One decision row: the wallet's side from ``decision``, the live side from the capture.

    A plain tuple in :data:`DECISION_COLUMNS` order: a million of them pass through the
    writer, and a tuple of atomic values is built in one step and never tracked by the
    garbage collector, where a dict per row is both.
    """
    currency = decision.currency or currency_hint
    live = dialect.read_answer(row.response_status, row.response_body, currency, currencies)
    return (
        row.capture_id,
        row.aggregator,
        decision.event,
        decision.transaction_id,
        decision.player_id,
        decision.session_id,
        decision.round_id,
        currency,
        decision.amount_minor,
        decision.outcome.value,
        decision.code.value,
        decision.http_status,
        decision.balance_before,
        decision.balance_after,
        row.response_status,
        live.code,
        live.balance_minor,
        str(mode),
        seq,
        row.captured_at_us,
        ref_transaction_id,
        row.latency_ms,
        row.error,
        row.network_duplicate,
        json.dumps(list(decision.flags)) if decision.flags else None,
        injected,
    )


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
        self._rows: list[DecisionRow] = []
        self._batch = batch_rows
        self.count = 0

    def add(self, row: DecisionRow) -> None:
        self._rows.append(row)
        if len(self._rows) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        columns = zip(*self._rows, strict=True)
        arrays = [pa.array(col, type=f.type) for col, f in zip(columns, self._schema, strict=True)]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))
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
