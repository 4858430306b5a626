"""The aggregator's settlement export (PROTOCOL.md section 2) and planted discrepancies.

The simulator records each bet, win and refund it sent with the status it
considers final; :func:`plant` then changes a few clean rows so that each
divergence kind an export can cause appears exactly once, and says which.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["EXPORT_KINDS", "ExportRow", "plant", "write_export"]

COLUMNS = (
    "transaction_id",
    "round_id",
    "player_id",
    "session_id",
    "event",
    "amount",
    "currency",
    "status",
    "settled_at",
    "ref_transaction_id",
)
EXPORT_KINDS = (
    "MISSING_IN_WALLET",
    "MISSING_IN_EXPORT",
    "AMOUNT_MISMATCH",
    "CURRENCY_MISMATCH",
    "STATUS_MISMATCH",
)


@dataclass(frozen=True, slots=True)
class ExportRow:
    transaction_id: str
    round_id: str
    player_id: str
    session_id: str
    event: str
    amount: str
    currency: str
    status: str
    settled_at: float
    ref_transaction_id: str = ""


def write_export(path: Path, rows: list[ExportRow]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            stamp = datetime.fromtimestamp(row.settled_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow(
                (
                    row.transaction_id,
                    row.round_id,
                    row.player_id,
                    row.session_id,
                    row.event,
                    row.amount,
                    row.currency,
                    row.status,
                    stamp,
                    row.ref_transaction_id,
                )
            )


def plant(
    rows: list[ExportRow], kinds: list[str], rng: random.Random, protected: set[str], prefix: str
) -> tuple[list[ExportRow], list[dict[str, str]]]:
    """Plant one discrepancy of each kind in ``kinds``; returns the rows and what was planted."""
    planted: list[dict[str, str]] = []
    out = list(rows)
    used = set(protected)

    def pick(event: str, *, currency: str | None = None) -> int:
        choices = [
            i
            for i, r in enumerate(out)
            if r.event == event
            and r.status == "SETTLED"
            and r.transaction_id not in used
            and (currency is None or r.currency == currency)
            and r.amount.strip("0.") != ""
        ]
        if not choices:
            raise ValueError(f"no clean {event} row left to plant a discrepancy on")
        index = rng.choice(choices)
        used.add(out[index].transaction_id)
        return index

    for kind in kinds:
        if kind == "MISSING_IN_WALLET":
            model = out[pick("win")]
            ghost = replace(model, transaction_id=f"{prefix}-never-sent-win")
            used.add(ghost.transaction_id)
            out.append(ghost)
            planted.append(
                {
                    "kind": kind,
                    "transaction_id": ghost.transaction_id,
                    "what": "the export settled a win the wallet never received",
                }
            )
        elif kind == "MISSING_IN_EXPORT":
            index = pick("bet")
            row = out.pop(index)
            planted.append(
                {
                    "kind": kind,
                    "transaction_id": row.transaction_id,
                    "what": "a settled bet is missing from the export",
                }
            )
        elif kind == "AMOUNT_MISMATCH":
            index = pick("win")
            row = out[index]
            out[index] = replace(row, amount=_bump(row.amount))
            planted.append(
                {
                    "kind": kind,
                    "transaction_id": row.transaction_id,
                    "what": f"the export says {out[index].amount}, the wallet {row.amount}",
                }
            )
        elif kind == "CURRENCY_MISMATCH":
            index = pick("bet", currency="EUR")
            row = out[index]
            out[index] = replace(row, currency="USD")
            planted.append(
                {
                    "kind": kind,
                    "transaction_id": row.transaction_id,
                    "what": "the export says USD, the wallet EUR",
                }
            )
        elif kind == "STATUS_MISMATCH":
            index = pick("bet")
            row = out[index]
            out[index] = replace(row, status="DECLINED")
            planted.append(
                {
                    "kind": kind,
                    "transaction_id": row.transaction_id,
                    "what": "the export declined a bet the wallet applied",
                }
            )
        else:
            raise ValueError(f"unknown export fault {kind!r} (known: {', '.join(EXPORT_KINDS)})")
    return out, planted


def _bump(amount: str) -> str:
    """The amount plus one unit of its last digit, keeping the same number of decimals."""
    whole, _, frac = amount.partition(".")
    digits = int(whole + frac) + 1
    text = str(digits).rjust(len(frac) + 1, "0")
    return f"{text[: -len(frac)]}.{text[-len(frac) :]}" if frac else text
