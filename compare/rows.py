"""Decision rows as flat numpy arrays: the one pass over the decision file the diff needs.

The diff works on key codes and boolean masks rather than on DataFrames (see
``BENCHMARKS.md``): every string comparison the rules need (outcome, code, the
``flags`` list) is done once here with pyarrow compute, so the rules themselves
are integer arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replay.decision_schema import DECISION_SCHEMA
from wallet_core.errors import InputError

__all__ = ["EVENTS", "NO_TIME", "Rows", "encode", "load_decisions", "mask"]

EVENTS = ("bet", "win", "refund", "settle", "balance")
BET, WIN, REFUND, SETTLE = 0, 1, 2, 3
#: Stand-in for a missing timestamp in int64 microsecond arrays.
NO_TIME = np.iinfo(np.int64).min
#: Columns the diff cannot do without (the rest of DECISION_SCHEMA is optional).
REQUIRED = (
    "capture_id",
    "event",
    "transaction_id",
    "player_id",
    "round_id",
    "currency",
    "amount_minor",
    "outcome",
    "code",
)
CAPTURE_DIR_KEY = b"rgs_shadow.capture_dir"


def load_decisions(path: str | Path) -> pa.Table:
    """Read a decision file, filling absent optional columns with nulls; sorted by ``seq``."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: line 1: not a readable Parquet decision file: {exc}") from None
    for name in REQUIRED:
        if name not in table.column_names:
            raise InputError(f"{path}: line 1, column {name}: missing from the decision file")
    columns = []
    for field in DECISION_SCHEMA:
        if field.name in table.column_names:
            try:
                columns.append(table.column(field.name).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(
                    f"{path}: line 1, column {field.name}: has type "
                    f"{table.schema.field(field.name).type}, expected {field.type}"
                ) from None
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    out = pa.Table.from_arrays(columns, schema=DECISION_SCHEMA.with_metadata(table.schema.metadata))
    seq = out.column("seq")
    if seq.null_count == 0 and out.num_rows > 1:
        values = seq.to_numpy()
        if (np.diff(values) < 0).any():
            out = out.take(pa.array(np.argsort(values, kind="stable")))
    return out


def mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean pyarrow result as numpy, nulls read as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _ints(array: pa.Array | pa.ChunkedArray, fill: int) -> np.ndarray:
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


def encode(*arrays: pa.Array | pa.ChunkedArray) -> tuple[list[np.ndarray], pa.Array]:
    """Shared integer codes for string columns (nulls get -1), and the dictionary."""
    parts = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    joined = pa.concat_arrays([p.cast(pa.string()) for p in parts])
    encoded = pc.dictionary_encode(joined)
    codes = np.asarray(
        pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    out, start = [], 0
    for part in parts:
        out.append(codes[start : start + len(part)])
        start += len(part)
    return out, encoded.dictionary


@dataclass(slots=True)
class Rows:
    """Every decision row, column by column; string columns stay pyarrow for evidence."""

    table: pa.Table
    n: int
    event: np.ndarray  # int8 index into EVENTS, -1 unknown
    amount: np.ndarray  # int64, null read as 0
    ok: np.ndarray
    retry_later: np.ndarray
    applied: np.ndarray
    no_money: np.ndarray
    tombstone: np.ndarray
    late: np.ndarray
    captured: np.ndarray  # int64 microseconds, NO_TIME when null
    has_txid: np.ndarray

    @classmethod
    def of(cls, table: pa.Table) -> Rows:
        event = pc.index_in(table.column("event"), value_set=pa.array(EVENTS))
        flags = table.column("flags")
        captured = table.column("captured_at").cast(pa.int64())
        return cls(
            table=table,
            n=table.num_rows,
            event=np.asarray(pc.fill_null(event, -1).to_numpy(zero_copy_only=False), np.int8),
            amount=_ints(table.column("amount_minor"), 0),
            ok=mask(pc.equal(table.column("code"), "OK")),
            retry_later=mask(pc.equal(table.column("code"), "RETRY_LATER")),
            applied=mask(pc.equal(table.column("outcome"), "APPLIED")),
            no_money=mask(pc.match_substring(flags, '"no_money_moved"')),
            tombstone=mask(pc.match_substring(flags, '"tombstone"')),
            late=mask(pc.match_substring(flags, '"late"')),
            captured=_ints(captured, NO_TIME),
            has_txid=mask(pc.is_valid(table.column("transaction_id"))),
        )

    def money(self) -> np.ndarray:
        """Rows of money events (bet, win, refund) that name a transaction."""
        out: np.ndarray = (self.event >= 0) & (self.event <= REFUND) & self.has_txid
        return out

    def moved(self) -> np.ndarray:
        """Rows where the wallet moved money: applied, OK, an amount, not flagged otherwise."""
        out: np.ndarray = self.money() & self.applied & self.ok & ~self.no_money
        return out & (self.amount > 0)

    def column(self, name: str) -> pa.Array:
        return self.table.column(name).combine_chunks()

    def cell(self, name: str, row: int) -> Any:
        """One value as Python (texts and evidence only)."""
        return self.table.column(name)[row].as_py()

    def strings(self, name: str, rows: np.ndarray) -> list[str | None]:
        """Python values of a few rows (evidence and texts only, never the whole column)."""
        return list(pc.take(self.table.column(name), pa.array(rows, pa.int64())).to_pylist())
