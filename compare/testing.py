"""A scenario builder for decisions and settlement exports: tests and the benchmark share it.

Writing decision rows by hand invites inconsistent balances, and a diff test is
only as good as the clean baseline it plants a fault into.  :class:`Scenario`
keeps the wallet's and the live wallet's balances, times, sequence numbers and
capture ids consistent, so a test states only the fault it plants.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from replay.decision_schema import DECISION_SCHEMA
from wallet_core.codes import HTTP_STATUS, Code
from wallet_core.money import DEFAULT_CURRENCIES, format_amount

from .columnmap import ROW_FIELDS

__all__ = ["Scenario"]

_SIGN = {"bet": -1, "win": 1, "refund": 1}


@dataclass
class Scenario:
    """One player's traffic: decisions (one row per callback) and the export rows."""

    player: str = "p1"
    currency: str = "EUR"
    balance: int = 100_00
    start: datetime = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    step: timedelta = timedelta(seconds=1)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    export: list[dict[str, Any]] = field(default_factory=list)
    live_balance: int | None = None
    _now: datetime | None = None

    def __post_init__(self) -> None:
        self.live_balance = self.balance if self.live_balance is None else self.live_balance
        self._now = self.start

    # -- time -------------------------------------------------------------------------------
    def tick(self, delta: timedelta | None = None) -> datetime:
        assert self._now is not None
        self._now += delta or self.step
        return self._now

    # -- callbacks ----------------------------------------------------------------------------
    def callback(
        self,
        event: str,
        txid: str | None,
        amount: int | None = None,
        *,
        round_id: str = "r1",
        code: str = "OK",
        outcome: str | None = None,
        flags: tuple[str, ...] = (),
        ref: str | None = None,
        live_code: str | None = "same",
        live_delta: int | None = None,
        latency_ms: float = 40.0,
        error: str | None = None,
        moves: bool | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """Append one decided callback; balances follow unless ``moves`` says otherwise."""
        outcome = outcome or ("APPLIED" if code == "OK" else "REJECTED")
        moved = (
            moves
            if moves is not None
            else (
                outcome == "APPLIED"
                and code == "OK"
                and event in _SIGN
                and "no_money_moved" not in flags
                and bool(amount)
            )
        )
        effect = _SIGN.get(event, 0) * (amount or 0) if moved else 0
        before = self.balance
        self.balance += effect
        live = code if live_code == "same" else live_code
        if live_delta is None:
            live_delta = effect if (live == "OK" or live is None) else 0
        assert self.live_balance is not None
        self.live_balance += live_delta
        answered = error is None
        now = self.tick()
        row = {
            "capture_id": f"c{len(self.decisions) + 1}",
            "aggregator": "acme",
            "event": event,
            "transaction_id": txid,
            "player_id": self.player,
            "session_id": "s1",
            "round_id": round_id if event != "balance" else None,
            "currency": currency or self.currency,
            "amount_minor": amount,
            "outcome": outcome,
            "code": code,
            "http_status": HTTP_STATUS[Code(code)],
            "balance_before_minor": before,
            "balance_after_minor": self.balance,
            "live_status": (HTTP_STATUS[Code(live)] if live else 200) if answered else None,
            "live_code": live if answered else None,
            "live_balance_minor": self.live_balance if answered else None,
            "mode": "shadow",
            "seq": len(self.decisions) + 1,
            "captured_at": now,
            "ref_transaction_id": ref,
            "latency_ms": latency_ms,
            "error": error,
            "network_duplicate": False,
            "flags": json.dumps(list(flags)),
            "injected": None,
        }
        self.decisions.append(row)
        return row

    def retry(
        self,
        first: dict[str, Any],
        *,
        live_balance: int | None = None,
        outcome: str = "REPEAT",
        moves: bool = False,
    ) -> dict[str, Any]:
        """The same callback captured again; by default an idempotent, identical answer."""
        row = dict(first)
        amount = first["amount_minor"] or 0
        effect = _SIGN.get(first["event"], 0) * amount if moves else 0
        row["outcome"] = "APPLIED" if moves else outcome
        row["balance_before_minor"] = self.balance
        self.balance += effect
        row["balance_after_minor"] = self.balance
        if live_balance is not None:
            row["live_balance_minor"] = live_balance
            self.live_balance = live_balance
        row.update(
            seq=len(self.decisions) + 1,
            capture_id=f"c{len(self.decisions) + 1}",
            captured_at=self.tick(),
            network_duplicate=True,
        )
        self.decisions.append(row)
        return row

    def settled(
        self,
        txid: str,
        event: str,
        amount: int,
        *,
        status: str = "SETTLED",
        round_id: str = "r1",
        ref: str | None = None,
        currency: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Append one export row (settled at the current scenario time unless ``at``)."""
        cur = currency or self.currency
        exp = DEFAULT_CURRENCIES.get(cur, 2)
        self.export.append(
            {
                "transaction_id": txid,
                "round_id": round_id,
                "player_id": self.player,
                "session_id": "s1",
                "event": event,
                "amount": format_amount(amount, exp),
                "currency": cur,
                "status": status,
                "settled_at": (at or self._now or self.start).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "ref_transaction_id": ref or "",
            }
        )

    # -- convenience: a callback and its export row ----------------------------------------
    def bet(
        self, txid: str, amount: int, *, round_id: str = "r1", status: str = "SETTLED", **kw: Any
    ) -> dict[str, Any]:
        row = self.callback("bet", txid, amount, round_id=round_id, **kw)
        self.settled(txid, "bet", amount, status=status, round_id=round_id)
        return row

    def win(self, txid: str, amount: int, *, round_id: str = "r1", **kw: Any) -> dict[str, Any]:
        row = self.callback("win", txid, amount, round_id=round_id, **kw)
        if amount:
            self.settled(txid, "win", amount, round_id=round_id)
        return row

    def refund(
        self, txid: str, bet: str, amount: int, *, round_id: str = "r1", **kw: Any
    ) -> dict[str, Any]:
        row = self.callback("refund", txid, amount, round_id=round_id, ref=bet, **kw)
        self.settled(txid, "refund", amount, round_id=round_id, ref=bet)
        return row

    def clean_day(self, rounds: int = 3, tag: str = "") -> None:
        """Ordinary traffic: bets, wins (one of zero), a settle, a balance call, a refund.

        ``tag`` prefixes every id, so a test can surround a planted fault with two
        stretches of clean traffic.
        """
        for i in range(rounds):
            rid = f"{tag}r{i}"
            self.bet(f"{tag}b{i}", 10_00 + i, round_id=rid)
            self.win(f"{tag}w{i}", (i % 2) * 25_00, round_id=rid)
            self.callback("settle", f"{tag}s{i}", None, round_id=rid)
        self.callback("balance", None)
        self.bet(f"{tag}bx", 5_00, round_id=f"{tag}rx", status="CANCELLED")
        self.refund(f"{tag}rfx", f"{tag}bx", 5_00, round_id=f"{tag}rx")

    # -- files --------------------------------------------------------------------------------
    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.decisions, schema=DECISION_SCHEMA)

    def write(self, directory: Path, *, capture_dir: Path | None = None) -> tuple[Path, Path]:
        """Write ``decisions.parquet`` and ``export.csv`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        decisions, export = directory / "decisions.parquet", directory / "export.csv"
        table = self.table()
        if capture_dir is not None:
            table = table.replace_schema_metadata(
                {b"rgs_shadow.capture_dir": str(capture_dir).encode()}
            )
        pq.write_table(table, decisions)
        write_export(export, self.export)
        return decisions, export


def write_export(
    path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] = ROW_FIELDS
) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
