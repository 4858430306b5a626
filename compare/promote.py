"""Promotion: switching the wallet from shadow to live on evidence, and back.

The switch is the one decision in the project that moves real money, so it is
refused unless the evidence (a DIVERGENCES directory written by ``compare``)
covers enough time and traffic and holds no divergence with money at risk.
Money at risk is re-derived from ``divergences.parquet`` rather than trusted
from ``summary.json``.  The switch is chained into the audit log with the
sha256 of every evidence file, so the log shows *which* evidence a switch was
made on; a forced switch records its reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wallet_core.clock import now_us, timestamp_us
from wallet_core.errors import InputError
from wallet_core.store import Store
from wallet_core.store.base import AuditEntry

from .writer import EVIDENCE_FILES

__all__ = ["Evidence", "read_evidence", "refusals", "switch_mode"]

DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True, slots=True)
class Evidence:
    path: Path
    summary: dict[str, Any]
    hashes: dict[str, str]
    at_risk_minor: int
    divergences: int

    @property
    def span_us(self) -> int:
        span = self.summary.get("time_range") or {}
        if not span.get("first") or not span.get("last"):
            return 0
        return timestamp_us(span["last"]) - timestamp_us(span["first"])

    @property
    def decided(self) -> int:
        return int((self.summary.get("coverage") or {}).get("decided", 0))


def read_evidence(path: Path) -> Evidence:
    """Read and hash a DIVERGENCES directory; :class:`InputError` when it is unusable."""
    hashes: dict[str, str] = {}
    for name in EVIDENCE_FILES:
        file = path / name
        if not file.is_file():
            raise InputError(f"{file}: missing from the evidence directory")
        hashes[name] = hashlib.sha256(file.read_bytes()).hexdigest()
    try:
        summary = json.loads((path / "summary.json").read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", 1)
        raise InputError(f"{path / 'summary.json'}: line {line}: not JSON") from None
    try:
        table = pq.read_table(path / "divergences.parquet", columns=["amount_at_risk_minor"])
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise InputError(f"{path / 'divergences.parquet'}: unreadable: {exc}") from None
    risk = pc.sum(table.column("amount_at_risk_minor")).as_py() or 0
    return Evidence(path.resolve(), summary, hashes, int(risk), table.num_rows)


def refusals(evidence: Evidence, *, min_days: float, min_callbacks: int) -> list[str]:
    """Why this evidence does not justify going live (empty: it does)."""
    out = []
    if evidence.at_risk_minor > 0 or evidence.summary.get("money_at_risk"):
        out.append(
            f"the evidence holds divergences with money at risk "
            f"({evidence.at_risk_minor} minor units in total)"
        )
    days = evidence.span_us / DAY_US
    if days < min_days:
        out.append(f"the evidence covers {days:.2f} days of traffic, {min_days:g} are required")
    if evidence.decided < min_callbacks:
        out.append(
            f"the evidence covers {evidence.decided} callbacks, {min_callbacks} are required"
        )
    return out


def switch_mode(
    store: Store,
    to: str,
    *,
    command: str,
    reason: str | None,
    evidence: Evidence | None = None,
    forced: bool = False,
    refused: list[str] | None = None,
    at_us: int | None = None,
) -> int:
    """Record the switch in the audit log, then set the mode; returns the audit sequence.

    The audit row is written first: a crash between the two leaves a recorded
    intent with the old mode still in force, never a silent switch.
    """
    previous = store.get_mode() or "shadow"
    decision: dict[str, Any] = {
        "from": previous,
        "to": to,
        "command": command,
        "reason": reason,
        "forced": forced,
    }
    if evidence is not None:
        decision["evidence"] = {
            "path": str(evidence.path),
            "sha256": evidence.hashes,
            "decided": evidence.decided,
            "span_us": evidence.span_us,
            "at_risk_minor": evidence.at_risk_minor,
        }
    if refused:
        decision["overridden_refusals"] = refused
    text = json.dumps(decision, sort_keys=True, separators=(",", ":"))
    entry = AuditEntry(
        at_us=at_us if at_us is not None else now_us(),
        aggregator="operator",
        kind="mode_change",
        headers="{}",
        request=text.encode(),
        decision=text,
        response=b"",
        player_id=None,
        currency=None,
        amount_minor=None,
        balance_after=None,
    )
    with store.transaction() as tx:
        seq = tx.append_audit(entry)
    store.flush()
    store.set_mode(to)
    return seq
