"""Reconciliation: the hourly diff of the live ledger against the aggregator's export.

After promotion there are no captures to replay: the store itself remembers
every decided callback (the audit row holds the decision, the idempotency row
the round and the refunded bet), so :func:`history_decisions` rebuilds a
decision table from it and the same diff engine runs.  There are no live
responses to compare here (the wallet *is* the live side), so only the export
rules and the wallet's own double application apply.

When money is at risk the summary is POSTed to an alert webhook; a failed POST
is reported but never hides the exit status, which is what cron acts on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from replay.decision_schema import DECISION_SCHEMA
from wallet_core.errors import ConfigError
from wallet_core.store import Store
from wallet_core.store.base import HistoryRow, HistoryStore

from .settlement import Settlement

__all__ = [
    "history_decisions",
    "parse_reconcile_options",
    "post_alert",
    "store_history",
    "window_export",
]

_KEYS = ("webhook_timeout_seconds", "lookback_hours")


def parse_reconcile_options(table: dict[str, Any] | None) -> dict[str, float]:
    """Validate ``[reconcile]``: ``webhook_timeout_seconds`` (10), ``lookback_hours`` (2)."""
    table = dict(table or {})
    for key in table:
        if key not in _KEYS:
            raise ConfigError(f"reconcile.{key}: unknown key")
    out = {"webhook_timeout_seconds": 10.0, "lookback_hours": 2.0}
    for key in _KEYS:
        value = table.get(key, out[key])
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"reconcile.{key}: must be a positive number")
        out[key] = float(value)
    return out


def store_history(store: Store, since_us: int | None, until_us: int | None) -> list[HistoryRow]:
    if not isinstance(store, HistoryStore):
        raise ConfigError(f"--db: {type(store).__name__} cannot list its history for reconcile yet")
    return list(store.txn_history(since_us, until_us))


def history_decisions(rows: Iterable[HistoryRow]) -> pa.Table:
    """The store's history as a decision table (capture ids ``audit:SEQ`` point at the log)."""
    records = [
        {
            "capture_id": f"audit:{r.seq}",
            "aggregator": r.aggregator,
            "event": r.event,
            "transaction_id": r.transaction_id,
            "player_id": r.player_id,
            "round_id": r.round_id,
            "currency": r.currency,
            "amount_minor": r.amount_minor,
            "outcome": r.outcome,
            "code": r.code,
            "balance_after_minor": r.balance_after,
            "mode": "live",
            "seq": r.seq,
            "captured_at": r.at_us,
            "ref_transaction_id": r.ref_transaction_id,
            "flags": r.flags,
        }
        for r in rows
    ]
    columns = []
    for field in DECISION_SCHEMA:
        values = [rec.get(field.name) for rec in records]
        if field.name == "captured_at":
            columns.append(pa.array(values, pa.int64()).cast(field.type))
        else:
            columns.append(pa.array(values, field.type))
    return pa.Table.from_arrays(columns, schema=DECISION_SCHEMA)


def window_export(settlement: Settlement, since_us: int | None, until_us: int | None) -> Settlement:
    """Only the export rows settled inside the window (rows without a time are kept)."""
    table = settlement.table
    when = table.column("settled_at").cast(pa.int64())
    keep = pc.is_null(when)
    inside = pc.is_valid(when)
    if since_us is not None:
        inside = pc.and_(inside, pc.greater_equal(when, since_us))
    if until_us is not None:
        inside = pc.and_(inside, pc.less(when, until_us))
    return Settlement(settlement.path, table.filter(pc.or_(keep, inside)), settlement.granularity)


def post_alert(url: str, summary: dict[str, Any], timeout_s: float) -> str | None:
    """POST ``summary`` as JSON; returns None on a 2xx answer, else a one-line reason."""
    try:
        response = httpx.post(url, json=summary, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"alert webhook {url} failed: {type(exc).__name__}: {exc}"
    if not response.is_success:
        return f"alert webhook {url} answered HTTP {response.status_code}"
    return None
