"""Synthetic captures: callbacks answered by an in-process live wallet, written as capture files."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from shadow.capture_record import CaptureRecord, hour_key, partition_of, records_to_table
from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.store import SqliteStore
from wallet_core.testing import CallbackFactory

T0 = 1_795_000_000 * 1_000_000  # 2026-11-18


@dataclass
class LiveRecorder:
    """Plays callbacks against a live-mode wallet and records them as a capture would."""

    path: Path
    balances: dict[tuple[str, str], int] = field(default_factory=dict)
    now: int = T0
    records: list[CaptureRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = SqliteStore(self.path / "live.db")
        self.config = WalletConfig.single()
        self.core = WalletCore(self.store, self.config, mode=Mode.LIVE)
        self.operator = OperatorApi(self.store, self.config)
        for (player, currency), minor in self.balances.items():
            self.operator.adjust(f"open-{player}-{currency}", player, currency, minor, self.now)

    def session(self, sid: str, player: str, currency: str) -> None:
        self.operator.open_session(sid, player, currency, "default", self.now)

    def send(
        self, event: str, *, step_us: int = 1_000_000, error: str | None = None, **fields: Any
    ) -> CaptureRecord:
        self.now += step_us
        headers, body = CallbackFactory().make(event, **fields)
        result = self.core.handle("default", headers, body, self.now)
        record = CaptureRecord(
            capture_id=uuid.uuid4().hex,
            captured_at=self.now,
            client_addr="127.0.0.1:5000",
            method="POST",
            path="/rgs/default",
            aggregator="default",
            request_headers=tuple(headers.items()),
            request_body=body,
            response_status=None if error else result.response.status,
            response_headers=None if error else tuple(result.response.headers),
            response_body=None if error else result.response.body,
            latency_ms=3000.0 if error else 1.0,
            error=error,
            transaction_id=fields.get("transaction_id"),
            event=event,
            network_duplicate=False,
            request_body_length=len(body),
            response_body_length=len(result.response.body),
            proxy_id="test",
        )
        self.records.append(record)
        return record

    def write(self, capture_dir: Path) -> Path:
        write_capture(capture_dir, self.records)
        return capture_dir


def write_capture(capture_dir: Path, records: Iterable[CaptureRecord]) -> None:
    """Write records as hour partitions, several files per hour like a real capture."""
    by_hour: dict[int, list[CaptureRecord]] = {}
    for record in records:
        by_hour.setdefault(hour_key(record.captured_at), []).append(record)
    for hour, rows in by_hour.items():
        date, hh = partition_of(hour)
        folder = capture_dir / f"date={date}" / f"hour={hh}"
        folder.mkdir(parents=True, exist_ok=True)
        half = max(1, len(rows) // 2)
        for i, chunk in enumerate((rows[:half], rows[half:])):
            if chunk:
                pq.write_table(records_to_table(chunk), folder / f"part-{i}.parquet")
