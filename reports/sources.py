"""Reading what a report is built from: a DIVERGENCES directory and the files it points at.

The divergences and their summary are required (a missing or unreadable one is an
:class:`InputError`, exit 2).  The captures, decisions and settlement export are evidence:
the summary names them by absolute path, and they may have been moved or deleted since
compare ran, so each one that cannot be read becomes a note on the report instead of a
failure.  Only the rows the divergences cite are kept, so a week of captures costs the
report no more memory than the divergences themselves.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from compare.divergence import DIVERGENCE_SCHEMA
from replay.decision_schema import DECISION_SCHEMA
from shadow import dataset as shadow_dataset
from shadow.capture_schema import CAPTURE_SCHEMA
from wallet_core.errors import InputError

__all__ = ["Sources", "load_sources", "read_captures"]

#: Header values that never leave the machine in a report (mailed, attached to tickets).
REDACTED_HEADERS = frozenset(
    {"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"}
)


@dataclass(frozen=True)
class Sources:
    """Everything a report is built from, read once."""

    directory: Path
    divergences: list[dict[str, Any]]
    summary: dict[str, Any]
    #: capture_id -> capture row (only the captures the divergences cite).
    captures: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: capture_id -> decision row.
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: transaction_id -> the export's rows for it.
    exports: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    #: Evidence that could not be read, one line each, shown on every report.
    notes: list[str] = field(default_factory=list)


def load_sources(directory: Path) -> Sources:
    """Read DIVERGENCES and the evidence its summary points at."""
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory of divergences (rgs-shadow compare --out)")
    divergences = _read_divergences(directory / "divergences.parquet")
    summary = _read_summary(directory / "summary.json")
    cited_captures = {cid for d in divergences for cid in d["capture_ids"] or ()}
    cited_txs = {d["transaction_id"] for d in divergences if d["transaction_id"]}
    notes: list[str] = []
    captures: dict[str, dict[str, Any]] = {}
    decisions: dict[str, dict[str, Any]] = {}
    exports: dict[str, list[dict[str, str]]] = {}

    capture_dir = summary.get("capture_dir")
    if not capture_dir:
        notes.append("no capture directory recorded: captured requests are not shown")
    elif not Path(capture_dir).is_dir():
        notes.append(f"capture directory {capture_dir} is missing: captured requests not shown")
    elif cited_captures:
        try:
            table = read_captures(Path(capture_dir), cited_captures)
            captures = {row["capture_id"]: _with_redacted_headers(row) for row in table.to_pylist()}
        except (OSError, pa.ArrowException) as exc:
            notes.append(f"captures in {capture_dir} unreadable: {_one_line(exc)}")

    decisions_path = summary.get("decisions")
    if decisions_path and Path(decisions_path).is_file():
        try:
            decisions = _read_decisions(Path(decisions_path), cited_captures)
        except (OSError, pa.ArrowException) as exc:
            notes.append(f"decisions {decisions_path} unreadable: {_one_line(exc)}")
    else:
        notes.append(f"decisions {decisions_path or '(not recorded)'} missing: not shown")

    export_path = summary.get("settlement")
    if export_path and Path(export_path).is_file():
        try:
            exports = _read_export(Path(export_path), cited_txs)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            notes.append(f"settlement export {export_path} unreadable: {_one_line(exc)}")
    else:
        notes.append(f"settlement export {export_path or '(not recorded)'} missing: not shown")
    return Sources(directory, divergences, summary, captures, decisions, exports, notes)


def read_captures(capture_dir: Path, capture_ids: Collection[str]) -> pa.Table:
    """The capture rows with the given ids, in :data:`CAPTURE_SCHEMA` columns.

    The one place the reports touch capture files; it goes through the shared reader
    (``shadow.dataset``), which skips files still being written and merged-away sources.
    """
    wanted = pa.array(sorted(capture_ids), pa.string())
    return shadow_dataset.read_captures(
        capture_dir, columns=list(CAPTURE_SCHEMA.names), filter=pc.field("capture_id").isin(wanted)
    )


def _read_divergences(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise InputError(
            f"{path.parent}: no divergences.parquet (is it a compare --out directory?)"
        )
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: unreadable Parquet: {_one_line(exc)}") from None
    missing = [name for name in ("kind", "amount_at_risk_minor") if name not in table.schema.names]
    if missing:
        raise InputError(f"{path}: not a divergence file (no column {missing[0]!r})")
    for column in DIVERGENCE_SCHEMA:  # files from older versions: absent columns read as nulls
        if column.name not in table.schema.names:
            table = table.append_column(column, pa.nulls(len(table), column.type))
    try:
        table = table.select(DIVERGENCE_SCHEMA.names).cast(DIVERGENCE_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise InputError(f"{path}: columns of the wrong type: {_one_line(exc)}") from None
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"{path.parent}: no summary.json (is it a compare --out directory?)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not JSON: {_one_line(exc)}") from None
    if not isinstance(summary, dict):
        raise InputError(f"{path}: not a JSON object")
    if summary.get("version") != 1:
        raise InputError(f"{path}: summary version {summary.get('version')!r}, expected 1")
    return summary


def _read_decisions(path: Path, capture_ids: Collection[str]) -> dict[str, dict[str, Any]]:
    table = pq.read_table(path)
    names = [n for n in DECISION_SCHEMA.names if n in table.schema.names]
    wanted = pa.array(sorted(capture_ids), pa.string())
    table = table.select(names).filter(pc.is_in(table["capture_id"], value_set=wanted))
    return {row["capture_id"]: row for row in table.to_pylist()}


def _read_export(path: Path, transaction_ids: Collection[str]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            tx = row.get("transaction_id")
            if tx is not None and tx in transaction_ids:
                found.setdefault(tx, []).append({k: v or "" for k, v in row.items() if k})
    return found


def _with_redacted_headers(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("request_headers", "response_headers"):
        row[name] = _redact(row.get(name))
    return row


def _redact(headers_json: str | None) -> list[tuple[str, str]]:
    """Headers as ``(name, value)`` pairs, credentials replaced; raw text kept if not JSON."""
    if not headers_json:
        return []
    try:
        parsed = json.loads(headers_json)
    except json.JSONDecodeError:
        return [("(unparsed)", headers_json)]
    pairs: Iterable[Any] = parsed.items() if isinstance(parsed, dict) else parsed
    out: list[tuple[str, str]] = []
    for pair in pairs:
        try:
            name, value = pair
        except (TypeError, ValueError):
            continue
        text = str(value)
        out.append((str(name), "[redacted]" if str(name).lower() in REDACTED_HEADERS else text))
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
