"""The DIVERGENCES directory: ``divergences.parquet``, ``divergences.json``, ``summary.json``.

The reports read the Parquet file; people and scripts read the JSON; ``promote``
hashes all three into the audit log, so each file is written aside and renamed
into place: a crash never leaves a half-written file that could be promoted on.
The sort order (kind, then time, then transaction id) is part of the contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .divergence import DIVERGENCE_SCHEMA, KIND_ORDER, Divergence

__all__ = [
    "EVIDENCE_FILES",
    "divergence_dicts",
    "divergence_table",
    "read_divergences",
    "sort_divergences",
    "write_evidence",
]

EVIDENCE_FILES = ("divergences.parquet", "divergences.json", "summary.json")
_NO_TIME = -(2**63)


def sort_divergences(items: list[Divergence]) -> list[Divergence]:
    return sorted(
        items,
        key=lambda d: (
            KIND_ORDER[d.kind.value],
            d.at_us if d.at_us is not None else _NO_TIME,
            d.transaction_id or "",
        ),
    )


def divergence_table(items: list[Divergence]) -> pa.Table:
    rows = [
        {
            "kind": d.kind.value,
            "transaction_id": d.transaction_id,
            "round_id": d.round_id,
            "player_id": d.player_id,
            "currency": d.currency,
            "amount_at_risk_minor": d.amount_at_risk_minor,
            "wallet_says": d.wallet_says,
            "live_says": d.live_says,
            "export_says": d.export_says,
            "capture_ids": list(d.capture_ids),
            "event": d.event,
            "detail": d.detail,
            "at": d.at_us,
        }
        for d in items
    ]
    columns = {f.name: [r[f.name] for r in rows] for f in DIVERGENCE_SCHEMA}
    arrays = [
        pa.array(columns[f.name], pa.int64() if f.name == "at" else f.type)
        for f in DIVERGENCE_SCHEMA
    ]
    arrays[-1] = arrays[-1].cast(DIVERGENCE_SCHEMA.field("at").type)
    return pa.Table.from_arrays(arrays, schema=DIVERGENCE_SCHEMA)


def divergence_dicts(items: list[Divergence]) -> list[dict[str, Any]]:
    """The JSON form: the schema's field names, ``at`` as RFC 3339, capture ids as a list."""
    out = []
    for row in divergence_table(items).to_pylist():
        at = row["at"]
        row["at"] = at.isoformat(timespec="microseconds").replace("+00:00", "Z") if at else None
        out.append(row)
    return out


def _replace(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_evidence(out_dir: Path, items: list[Divergence], summary: dict[str, Any]) -> Path:
    """Write the three files into ``out_dir`` (created); returns the directory."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ordered = sort_divergences(items)
    table = divergence_table(ordered)
    _replace(
        out_dir / "divergences.parquet", lambda p: pq.write_table(table, p, compression="zstd")
    )
    as_json = json.dumps(divergence_dicts(ordered), indent=1, ensure_ascii=False)
    _replace(out_dir / "divergences.json", lambda p: p.write_text(as_json + "\n", "utf-8"))
    _replace(
        out_dir / "summary.json",
        lambda p: p.write_text(json.dumps(summary, indent=2) + "\n", "utf-8"),
    )
    return out_dir


def read_divergences(out_dir: Path) -> pa.Table:
    return pq.read_table(out_dir / "divergences.parquet")
