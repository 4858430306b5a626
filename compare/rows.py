"""Decision rows as flat numpy arrays: the one pass over the decision file the diff needs.

The diff works on key codes and boolean masks rather than on DataFrames (see
``BENCHMARKS.md``): every string comparison the rules need (outcome, code, the
``flags`` list) is done once here with pyarrow compute, so the rules themselves
are integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replay.decision_schema import DECISION_SCHEMA
from wallet_core.errors import InputError

__all__ = ["EVENTS", "NO_TIME", "Rows", "dictionary_codes", "encode", "load_decisions", "mask"]

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


#: Columns of DECISION_SCHEMA nothing in compare reads: left null rather than decoded
#: (``session_id`` alone is a string per row).  Their types are still checked.
UNUSED = frozenset(
    {
        "aggregator",
        "session_id",
        "http_status",
        "balance_before_minor",
        "balance_after_minor",
        "mode",
        "network_duplicate",
        "injected",
    }
)


#: Few-valued text columns, read as dictionaries: the file already stores them so,
#: and decoding ten million short strings per column costs more time and memory
#: (about 70 MB each) than anything the diff then does with them.  Their type in
#: the loaded table is ``dictionary<int32, string>`` (:data:`DICTIONARY_TYPE`).
DICTIONARY = ("event", "currency", "outcome", "code", "live_code", "flags")
DICTIONARY_TYPE = pa.dictionary(pa.int32(), pa.string())

#: Numeric columns the diff reads whole: one chunk each, so numpy can view them rather
#: than copy (80 MB each at ten million rows).
ONE_CHUNK = frozenset({"amount_minor", "captured_at", "latency_ms"})


def load_decisions(path: str | Path) -> pa.Table:
    """Read a decision file, filling absent optional columns with nulls; sorted by ``seq``.

    Columns in :data:`UNUSED` are read as nulls: the diff, the summary and the
    evidence never look at them.  Columns the file's statistics say are all null are
    not decoded either (:func:`_all_null`).
    """
    path = Path(path)
    try:
        schema = pq.read_schema(path)
        meta = pq.read_metadata(path)
        present = [f.name for f in DECISION_SCHEMA if f.name in schema.names]
        empty = _all_null(meta) - UNUSED
        table = pq.read_table(
            path,
            columns=[n for n in present if n not in UNUSED and n not in empty],
            read_dictionary=[n for n in DICTIONARY if n in present],
            # The file's pages as they are in the page cache, not copied to fresh memory.
            memory_map=True,
        )
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: line 1: not a readable Parquet decision file: {exc}") from None
    for name in REQUIRED:
        if name not in present:
            raise InputError(f"{path}: line 1, column {name}: missing from the decision file")
    columns = []
    for field in DECISION_SCHEMA:
        if field.name in present:
            source = schema.field(field.name).type
            try:
                if field.name in UNUSED:
                    pa.nulls(0, source).cast(field.type)
                    columns.append(null_column(meta.num_rows, field.type))
                elif field.name in empty:
                    columns.append(null_column(meta.num_rows, field.type))
                else:
                    column = table.column(field.name)
                    if column.null_count == len(column):  # free the file's all-null buffers
                        columns.append(null_column(table.num_rows, field.type))
                    elif field.name in ONE_CHUNK:
                        columns.append(pa.chunked_array([column.cast(field.type).combine_chunks()]))
                    elif pa.types.is_dictionary(column.type):
                        columns.append(column.cast(DICTIONARY_TYPE))
                    else:
                        columns.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(
                    f"{path}: line 1, column {field.name}: has type {source}, expected {field.type}"
                ) from None
        else:
            columns.append(null_column(meta.num_rows, field.type))
    del table
    fields = [f.with_type(c.type) for f, c in zip(DECISION_SCHEMA, columns, strict=True)]
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=schema.metadata))
    seq = out.column("seq")
    if seq.null_count == 0 and out.num_rows > 1 and not _ascending(seq):
        out = out.take(pa.array(np.argsort(seq.to_numpy(), kind="stable")))
    pa.default_memory_pool().release_unused()  # hand the file's decoding buffers back
    return out


def _all_null(meta: pq.FileMetaData) -> set[str]:
    """Columns whose statistics say every value is null (often ``ref_transaction_id``,
    ``error``, ``live_balance_minor``): decoding them would allocate their offsets and
    values (about 150 MB for those three at ten million rows) only for the load to
    drop them as all-null.  Without statistics a column is read."""
    if not meta.num_rows:
        return set()
    out = set()
    for j in range(meta.num_columns):
        name = meta.schema.column(j).path
        nulls = 0
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            if stats is None or not stats.has_null_count:
                break
            nulls += stats.null_count
        else:
            if nulls == meta.num_rows:
                out.add(name)
    return out


def _ascending(column: pa.ChunkedArray) -> bool:
    """Whether the values never decrease, chunk by chunk (views, no joined copy)."""
    last = None
    for chunk in column.chunks:
        if not len(chunk):
            continue
        values = chunk.to_numpy()
        if (last is not None and values[0] < last) or (values[1:] < values[:-1]).any():
            return False
        last = values[-1]
    return True


def null_column(n: int, type_: pa.DataType) -> pa.ChunkedArray:
    """``n`` nulls of ``type_`` in almost no memory: one small chunk, repeated."""
    size = 1 << 16
    chunk = pa.nulls(min(n, size), type_)
    chunks = [chunk] * (n // size)
    if n % size or not chunks:
        chunks.append(chunk.slice(0, n % size))
    return pa.chunked_array(chunks, type_)


def by_value(
    column: pa.Array | pa.ChunkedArray, fn: Callable[[pa.Array], pa.Array]
) -> pa.ChunkedArray:
    """``fn`` (a compute function of strings) row by row; for a dictionary column it
    runs once per distinct value and is spread over the rows by their indices."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = [
        fn(c.dictionary).take(c.indices) if pa.types.is_dictionary(c.type) else fn(c)
        for c in chunks
    ]
    return pa.chunked_array(out, fn(pa.array([], pa.string())).type)


def spread(
    column: pa.Array | pa.ChunkedArray,
    fn: Callable[[pa.Array], pa.Array],
    fill: bool | int,
    dtype: type,
) -> np.ndarray:
    """``fn`` row by row as numpy ``dtype``, nulls read as ``fill``: what
    ``pc.fill_null(by_value(column, fn), fill)`` gives, made without Arrow in between.

    For a dictionary chunk ``fn`` runs on its values and numpy spreads them by the
    indices: an Arrow ``take`` of booleans packs bits that numpy then unpacks, about
    three times slower at ten million rows.
    """
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: np.ndarray = np.empty(len(column), dtype)
    at = 0
    for c in chunks:
        n = len(c)
        if pa.types.is_dictionary(c.type):
            values = _filled(fn(c.dictionary), fill, dtype)
            indices = c.indices
            if indices.null_count:  # nulls read the slot after the values: fill
                indices = pc.fill_null(indices, len(values))
            values = np.append(values, np.array([fill], dtype))
            out[at : at + n] = values[indices.to_numpy(zero_copy_only=False)]
        else:
            out[at : at + n] = _filled(fn(c), fill, dtype)
        at += n
    return out


def _filled(array: pa.Array, fill: bool | int, dtype: type) -> np.ndarray:
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False), dtype)


def take_rows(column: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array:
    """``column[rows]`` for a few rows, in the order asked, taken chunk by chunk.

    ``pc.take`` of a chunked text column first joins its chunks, a copy of the whole
    column (about 80 ms for ten million ids, at every call); a take from each chunk
    holding wanted rows copies only them.  Dictionary chunks come back decoded (their
    dictionaries may differ from chunk to chunk): the values are the same.
    """
    indices = np.asarray(rows, np.int64)
    if isinstance(column, pa.Array):
        return column.take(pa.array(indices))
    value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not len(indices):
        return pa.array([], value_type)
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    bounds = np.cumsum([0] + [len(c) for c in column.chunks])
    which = np.searchsorted(bounds, ordered, side="right") - 1
    pieces = []
    for k in np.unique(which).tolist():
        piece = column.chunk(k).take(pa.array(ordered[which == k] - bounds[k]))
        pieces.append(piece.cast(value_type) if piece.type != value_type else piece)
    taken = pa.concat_arrays(pieces)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return taken.take(pa.array(back))


def same_text(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    """Row-wise ``a == b`` for text columns, plain or dictionary (nulls: False)."""
    values = pc.unique(
        pa.concat_arrays([pc.unique(x).drop_null().cast(pa.string()) for x in (a, b)])
    )
    ia, ib = (spread(x, lambda v: pc.index_in(v, value_set=values), -1, np.int64) for x in (a, b))
    out: np.ndarray = (ia == ib) & (ia >= 0)
    return out


def mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean pyarrow result as numpy, nulls read as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _ints(array: pa.Array | pa.ChunkedArray, fill: int) -> np.ndarray:
    """As int64 numpy: a view (read-only) when ``array`` is one chunk without nulls."""
    if isinstance(array, pa.ChunkedArray) and array.num_chunks == 1:
        array = array.chunk(0)
    if array.null_count:  # fill_null copies even when there is nothing to fill
        array = pc.fill_null(array, fill)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


def _chunks(array: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    """The non-empty chunks as strings (pyarrow drops empty ones when it encodes)."""
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    return [c.cast(pa.string()) for c in chunks if len(c)]


def dictionary_codes(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Integer codes (see :func:`encode`, nulls -1) of one string column, and its dictionary."""
    (codes,), dictionary = encode(array)
    return codes, dictionary


def encode(*arrays: pa.Array | pa.ChunkedArray) -> tuple[list[np.ndarray], pa.Array]:
    """Shared integer codes for string columns (nulls get -1), and the dictionary.

    One hash pass over the chunks of every column as they are (no concatenated
    copy): pyarrow's chunked ``dictionary_encode`` gives every chunk the same,
    final dictionary, so the codes of all chunks agree.  Codes follow the order of
    first appearance across ``arrays``.  They are int32 (Arrow's own index width,
    half the memory of int64 on ten million rows) unless there could be more
    codes than that holds.
    """
    parts = [_chunks(a) for a in arrays]
    chunks = [c for part in parts for c in part]
    encoded = pc.dictionary_encode(pa.chunked_array(chunks, pa.string()))
    if encoded.num_chunks != len(chunks):  # never seen; the codes would not line up
        raise AssertionError("dictionary_encode changed the chunking")
    if encoded.num_chunks:
        dictionary = encoded.chunk(encoded.num_chunks - 1).dictionary
    else:
        dictionary = pa.array([], pa.string())
    out, chunk = [], 0
    width = np.int32 if sum(len(c) for c in chunks) < 2**31 - 1 else np.int64
    for part in parts:
        codes = np.empty(sum(len(c) for c in part), dtype=width)
        start = 0
        for _ in part:  # filled in place: no list of pieces to concatenate
            indices = pc.fill_null(encoded.chunk(chunk).indices, -1)
            codes[start : start + len(indices)] = indices.to_numpy(zero_copy_only=False)
            start += len(indices)
            chunk += 1
        out.append(codes)
    # The hash table and the indices are freed into malloc's heap when a comparison
    # runs (compare.memory.reuse_freed_pages), and the diff's numpy arrays reuse them:
    # not handed back here.  (A comparison's transaction ids, ten million and more, are
    # encoded by compare.idcodes instead: one table that large misses the cache.)
    return out, dictionary


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
    #: Per-row codes of ``transaction_id`` (see :meth:`tx_codes`), set by whoever hashes first.
    tx: np.ndarray | None = None

    @classmethod
    def of(cls, table: pa.Table) -> Rows:
        names = pa.array(EVENTS)
        flags, code = table.column("flags"), table.column("code")
        captured = table.column("captured_at").cast(pa.int64())

        def has(text: str) -> np.ndarray:
            return spread(flags, lambda v: pc.match_substring(v, text), False, bool)

        return cls(
            table=table,
            n=table.num_rows,
            event=spread(
                table.column("event"), lambda v: pc.index_in(v, value_set=names), -1, np.int8
            ),
            amount=_ints(table.column("amount_minor"), 0),
            ok=spread(code, lambda v: pc.equal(v, "OK"), False, bool),
            retry_later=spread(code, lambda v: pc.equal(v, "RETRY_LATER"), False, bool),
            applied=spread(table.column("outcome"), lambda v: pc.equal(v, "APPLIED"), False, bool),
            no_money=has('"no_money_moved"'),
            tombstone=has('"tombstone"'),
            late=has('"late"'),
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

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)

    def tx_codes(self) -> np.ndarray:
        """An integer per row naming its ``transaction_id`` (-1: none); hashed once.

        The diff sets it from the dictionary it shares with the export; only the
        codes' equality means anything, not their values.
        """
        if self.tx is None:
            self.tx = dictionary_codes(self.column("transaction_id"))[0]
        return self.tx

    def cell(self, name: str, row: int) -> Any:
        """One value as Python (texts and evidence only)."""
        return self.table.column(name)[row].as_py()

    def strings(self, name: str, rows: np.ndarray) -> list[str | None]:
        """Python values of a few rows (evidence and texts only, never the whole column)."""
        return list(take_rows(self.table.column(name), rows).to_pylist())
