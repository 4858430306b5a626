"""Settlement export loaders: the reference CSV, Parquet, and mapped vendor layouts.

Whatever the source, the result is one normalized table (:data:`EXPORT_SCHEMA`)
with exact minor-unit amounts and a source line per row, so the diff never has
to know where an export came from and every bad value can be reported as
``FILE: line L, column C (name): reason``.  Validation is vectorized (pyarrow
compute) and amounts go through :func:`wallet_core.money.parse_amount` once per
distinct ``(amount, currency)`` pair, which keeps ten million rows fast without
a second, looser decimal parser.

Line numbers assume one record per physical line (no newlines inside quoted
fields), which holds for every export layout we have seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from wallet_core.errors import InputError
from wallet_core.money import CurrencyTable, MoneyError, parse_amount

from .columnmap import ColumnMap
from .fastcsv import read_reference_csv
from .rows import DICTIONARY_TYPE, by_value, dictionary_codes

__all__ = ["EXPORT_SCHEMA", "Settlement", "SettlementError", "load_settlement"]

EXPORT_SCHEMA = pa.schema(
    [
        pa.field("transaction_id", pa.string()),
        pa.field("round_id", pa.string()),
        pa.field("player_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("event", pa.string()),
        pa.field("amount_minor", pa.int64()),
        pa.field("currency", pa.string()),
        pa.field("status", pa.string()),
        pa.field("settled_at", pa.timestamp("us", tz="UTC")),
        pa.field("ref_transaction_id", pa.string()),
        pa.field("line", pa.int64()),
    ]
)


class SettlementError(InputError):
    """A settlement export that cannot be used; the message names file, line and column."""

    def __init__(
        self, path: Path, line: int | None, column: str | None, index: int | None, reason: str
    ) -> None:
        where = str(path)
        if line is not None:
            where += f": line {line}"
        if column is not None:
            where += f", column {index} ({column})" if index is not None else f", column {column}"
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.column = path, line, column


@dataclass(frozen=True, slots=True)
class Settlement:
    """A loaded export: ``table`` has :data:`EXPORT_SCHEMA` (``event``, ``status`` and
    ``currency`` possibly dictionary-encoded); ``granularity`` is its key."""

    path: Path
    table: pa.Table
    #: ``transaction`` (one row per money movement) or ``round`` (per-round totals).
    granularity: str
    #: Set when the load left the duplicate-id check to the diff (``defer_id_check``):
    #: raises the :class:`SettlementError` for the first repeated id, if there is one.
    check_ids: Callable[[], None] | None = None


class _Source:
    """The raw string columns of one export file, with what is needed to name a cell."""

    def __init__(
        self,
        path: Path,
        table: pa.Table,
        first_line: int,
        is_csv: bool,
        rowmap: np.ndarray | None = None,
        names: list[str] | None = None,
    ) -> None:
        self.path, self.table, self.first_line, self.is_csv = path, table, first_line, is_csv
        #: Every column of the file, read or not: error messages give a column's position.
        self.names = names if names is not None else list(table.column_names)
        #: Original row of each kept row, when rows were skipped by status.
        self.rowmap = rowmap

    def row(self, row: int) -> int:
        return int(self.rowmap[row]) if self.rowmap is not None else row

    def line(self, row: int) -> int:
        return self.first_line + self.row(row)

    def fail(self, row: int | None, column: str, reason: str) -> SettlementError:
        index = self.names.index(column) + 1 if column in self.names else None
        line = self.first_line - 1 if row is None else self.line(row)
        if not self.is_csv and row is not None:
            reason = f"{reason} (row {self.row(row) + 1})"
        return SettlementError(self.path, line, column, index, reason)


def _read(path: Path, cmap: ColumnMap) -> _Source:
    if not path.is_file():
        raise SettlementError(path, None, None, None, "no such file")
    fmt = cmap.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    if fmt == "parquet":
        try:
            names = list(pq.read_schema(path).names)
            table = pq.read_table(path, columns=_wanted(names, cmap))
        except (pa.ArrowException, OSError) as exc:
            raise SettlementError(path, None, None, None, f"not a Parquet file: {exc}") from None
        return _Source(path, table, 1, False, names=names)
    names, plain = _header(path, cmap)
    table = None
    if (timed := _time_column(cmap)) is not None:
        try:  # the usual case, every time with its offset: parsed by the reader's threads
            table = _read_csv(path, names, plain, cmap, timed)
        except (pa.ArrowInvalid, UnicodeDecodeError):
            pass  # read again as text: _timestamps accepts or names the bad cell
    if table is None:
        try:
            table = _read_csv(path, names, plain, cmap, None)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SettlementError(path, None, None, None, f"unreadable CSV: {text}") from None
    return _Source(path, table, cmap.skip_lines + 2, True, names=names if plain else None)


def _time_column(cmap: ColumnMap) -> str | None:
    """The RFC 3339 time column, when no other field reads the same column.

    Read as ``timestamp[us, UTC]`` by the CSV reader it takes 8 bytes a row where
    its text takes about 30 and a cast after.  The reader accepts exactly the texts
    that cast accepts with an offset (:func:`_timestamps`' first try), and stops
    at the first without one (a file of local times, or a bad cell); the file is
    then read as text.
    """
    source = cmap.source("settled_at")
    if cmap.timestamp != "rfc3339" or not source or "settled_at" not in cmap.fields():
        return None
    others = {cmap.source(name) for name in cmap.fields() if name != "settled_at"}
    return None if source in others else source


def _read_csv(
    path: Path, names: list[str], plain: bool, cmap: ColumnMap, timed: str | None
) -> pa.Table:
    types: dict[str, pa.DataType] = {
        name: DICTIONARY_TYPE if name in _few_valued(cmap) else pa.string() for name in names
    }
    if timed is not None:
        types[timed] = pa.timestamp("us", tz="UTC")
    # Memory-mapped: the reader parses the file's own pages (already in the page
    # cache) instead of copying it, a gigabyte at ten million rows, into fresh buffers.
    with pa.memory_map(str(path)) as source:
        return pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(skip_rows=cmap.skip_lines, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=cmap.delimiter),
            # Empty cells, quoted or not, are read as nulls by the reader itself (and only
            # empty cells: "NA" or "NULL" stay text), so no column is rewritten afterwards.
            convert_options=pacsv.ConvertOptions(
                # Every other column typed as string: amounts must never pass through a
                # float.  The few-valued columns (event, status, currency) as dictionaries:
                # a third of the memory, and checks then run once per distinct value.
                column_types=types,
                # Only the columns the map uses, when the header is plain enough to be sure
                # of its names (see _header): the reader then skips converting the others.
                include_columns=_wanted(names, cmap) if plain else [],
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )


def _few_valued(cmap: ColumnMap) -> set[str]:
    return {cmap.source(field) for field in ("event", "status", "currency")} - {""}


#: Reference fields nothing in compare or the reports reads (an export's session is
#: never compared): their column must exist when the map names one, but it is not
#: parsed (ten million strings), and the loaded table has nulls there.
UNREAD = frozenset({"session_id"})


def _wanted(names: list[str], cmap: ColumnMap) -> list[str]:
    """The columns the map uses, in file order; the others are never parsed."""
    used = {cmap.source(field) for field in cmap.fields() if field not in UNREAD}
    return [name for name in dict.fromkeys(names) if name in used]


def _header(path: Path, cmap: ColumnMap) -> tuple[list[str], bool]:
    """The CSV header's column names, and whether they are exact (``plain``).

    They are exact when no name has a quote, or when a name is quoted whole with
    no quote or delimiter inside (``"transaction_id"``, as writers that quote every
    field make it): the reader then names the columns the same way.
    """
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        for _ in range(cmap.skip_lines):
            handle.readline()
        header = handle.readline().rstrip("\r\n")
    if not header:
        return [], True
    cells = header.split(cmap.delimiter)
    names = [_unquoted(cell) for cell in cells]
    return [n.strip('"') for n in names], all('"' not in n for n in names)


def _unquoted(cell: str) -> str:
    """``cell`` without its surrounding quotes when it is one simple quoted name."""
    if len(cell) >= 2 and cell[0] == cell[-1] == '"' and '"' not in cell[1:-1]:
        return cell[1:-1]
    return cell


def _column(src: _Source, cmap: ColumnMap, name: str) -> pa.Array | None:
    """The export column for reference field ``name`` as strings ("" read as null).

    Columns stay chunked as the reader made them: joining ten million strings into
    one buffer would copy the whole export once more for nothing.
    """
    source = cmap.source(name)
    if not source:
        return None
    if source not in src.names:
        raise src.fail(None, source, "column is missing from the header")
    if name in UNREAD:
        return None
    col = src.table.column(source)
    if pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type):
        return col
    if src.is_csv and pa.types.is_dictionary(col.type):
        return col  # read so (see _read), empty cells already null
    col = col.cast(pa.string())
    if src.is_csv or not pc.any(pc.equal(col, "")).as_py():
        return col
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def _required(src: _Source, col: pa.Array | None, column: str) -> pa.Array:
    if col is None:
        raise src.fail(None, column, "column is missing from the header")
    nulls = col.is_null()
    if pc.any(nulls).as_py():
        raise src.fail(_first(nulls), column, "value is empty")
    return col


def _first(mask: pa.Array) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _mapped(src: _Source, col: pa.Array, column: str, mapping: dict[str, str]) -> pa.Array:
    keys = pa.array(list(mapping), pa.string())
    index = by_value(col, lambda v: pc.index_in(v, value_set=keys))
    bad = index.is_null()
    if pc.any(bad).as_py():
        row = _first(bad)
        raise src.fail(
            row,
            column,
            f"unknown value {col[row].as_py()!r} (expected one of {', '.join(sorted(mapping))})",
        )
    if all(k == v for k, v in mapping.items()):  # the reference spelling: no copy
        return col
    return pc.take(pa.array(list(mapping.values()), pa.string()), index)


def _exponents(src: _Source, currency: pa.Array, column: str, table: CurrencyTable) -> np.ndarray:
    codes = table.codes()
    known = pa.array(codes, pa.string())
    index = by_value(currency, lambda v: pc.index_in(v, value_set=known))
    bad = index.is_null()
    if pc.any(bad).as_py():
        row = _first(bad)
        raise src.fail(row, column, f"unknown currency {currency[row].as_py()!r}")
    # int8: exponents are small, and this array has a row per export row.
    lookup = np.array([table.exponent(c) for c in codes], dtype=np.int8)
    out: np.ndarray = lookup[index.to_numpy(zero_copy_only=False)]
    return out


def _amounts(
    src: _Source, col: pa.Array, column: str, exps: np.ndarray, cmap: ColumnMap
) -> np.ndarray:
    """Exact minor units; each distinct (text, exponent) is converted once.

    Plainly valid texts are converted vectorized (:func:`_parse_amounts`); any
    other goes through :func:`wallet_core.money.parse_amount`, whose message
    names what is wrong with it.
    """
    if pa.types.is_integer(col.type):
        return _integer_amounts(src, col.cast(pa.int64()).to_numpy(), column, exps, cmap)
    if cmap.amount_units == "integer":
        ok = pc.match_substring_regex(col, r"^-?(0|[1-9][0-9]{0,17})$")
        if not pc.all(ok).as_py():
            row = _first(pc.invert(ok))
            raise src.fail(row, column, f"amount {col[row].as_py()!r} is not an integer")
        return _integer_amounts(src, col.cast(pa.int64()).to_numpy(), column, exps, cmap)
    codes, dictionary = dictionary_codes(col)
    # Distinct (text, exponent) pairs without sorting: a presence table over pair codes.
    # Row arrays as narrow as the pair codes allow (int32: half the memory of int64).
    width = np.int32 if len(dictionary) * 19 < 2**31 else np.int64
    combined: np.ndarray = codes.astype(width, copy=False) * 19
    combined += exps
    present = np.zeros(len(dictionary) * 19, dtype=bool)
    present[combined] = True
    uniques = np.flatnonzero(present)
    slot = np.zeros(len(present), dtype=width)
    slot[uniques] = np.arange(len(uniques))
    inverse = slot[combined]
    del combined
    words = dictionary.take(pa.array(uniques // 19))
    values, failed = _parse_amounts(words, uniques % 19)
    for i in failed.tolist():  # ascending: the first failing pair, as one loop would find it
        try:
            values[i] = parse_amount(words[i].as_py(), int(uniques[i] % 19))
        except MoneyError as exc:
            row = int(np.flatnonzero(inverse == i)[0])
            raise src.fail(row, column, str(exc)) from None
    out: np.ndarray = values[inverse]
    return out


#: The plain decimal form parse_amount accepts (no sign: negatives are refused anyway).
_PLAIN = r"^(?P<whole>0|[1-9][0-9]{0,17})(?:\.(?P<frac>[0-9]{1,18}))?$"


def _parse_amounts(words: pa.Array, exps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minor units of distinct amount texts, vectorized where the text is plainly valid.

    Texts matching :data:`_PLAIN` whose decimals fit their exponent and whose
    value has at most 18 digits (no overflow) are converted here, the way
    parse_amount does it: ``whole * 10**exponent + fraction padded to the
    exponent``.  The others come back as ``failed`` indices, for
    :func:`wallet_core.money.parse_amount` to accept or refuse with its own message.
    """
    values = np.zeros(len(words), dtype=np.int64)
    if not len(words):
        return values, np.zeros(0, dtype=np.int64)
    parts = pc.extract_regex(words, _PLAIN)
    ok = _bools(pc.is_valid(parts))
    whole = pc.fill_null(pc.struct_field(parts, "whole"), "0")
    frac = pc.fill_null(pc.struct_field(parts, "frac"), "")
    whole_len = _ints(pc.utf8_length(whole))
    ok &= (_ints(pc.utf8_length(frac)) <= exps) & (whole_len + exps <= 18)
    for exp in np.unique(exps[ok]).tolist():
        idx = np.flatnonzero(ok & (exps == exp))
        take = pa.array(idx)
        value = _ints(whole.take(take).cast(pa.int64())) * 10**exp
        if exp:
            padded = pc.utf8_rpad(frac.take(take), width=exp, padding="0")
            value += _ints(padded.cast(pa.int64()))
        values[idx] = value
    return values, np.flatnonzero(~ok)


def _bools(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _ints(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.int64)


def _integer_amounts(
    src: _Source, raw: np.ndarray, column: str, exps: np.ndarray, cmap: ColumnMap
) -> np.ndarray:
    exps = exps.astype(np.int64)  # powers of ten below
    scale = exps if cmap.amount_scale is None else np.full_like(exps, cmap.amount_scale)
    if (raw < 0).any():
        row = int(np.flatnonzero(raw < 0)[0])
        raise src.fail(row, column, "amount must not be negative")
    up = np.clip(exps - scale, 0, None)
    down = np.clip(scale - exps, 0, None)
    divisor = 10**down
    if (raw % divisor).any():
        row = int(np.flatnonzero(raw % divisor)[0])
        raise src.fail(row, column, f"amount {raw[row]} has more decimals than its currency")
    multiplier = 10**up
    if (raw // divisor > np.iinfo(np.int64).max // multiplier).any():
        row = int(np.flatnonzero(raw // divisor > np.iinfo(np.int64).max // multiplier)[0])
        raise src.fail(row, column, "amount does not fit 64 bits")
    out: np.ndarray = raw // divisor * multiplier
    return out


def _timestamps(src: _Source, col: pa.Array | None, column: str, cmap: ColumnMap) -> pa.Array:
    target = pa.timestamp("us", tz="UTC")
    if col is None:
        return pa.nulls(src.table.num_rows, target)
    if pa.types.is_timestamp(col.type):
        return col.cast(target) if col.type.tz else pc.assume_timezone(col, "UTC").cast(target)
    if cmap.timestamp != "rfc3339":
        factor = 1000 if cmap.timestamp == "epoch_ms" else 1_000_000
        ok = pc.or_(col.is_null(), pc.match_substring_regex(col, r"^[0-9]{1,16}$"))
        if not pc.all(ok).as_py():
            row = _first(pc.invert(ok))
            raise src.fail(row, column, f"timestamp {col[row].as_py()!r} is not epoch digits")
        return pc.multiply(col.cast(pa.int64()), factor).cast(target)
    try:
        return col.cast(target)
    except pa.ArrowInvalid:
        pass
    try:  # no offset anywhere: the vendor's local time is UTC by contract
        return pc.assume_timezone(col.cast(pa.timestamp("us")), "UTC").cast(target)
    except pa.ArrowInvalid:
        for row, value in enumerate(col.to_pylist()):
            try:
                pa.array([value], pa.string()).cast(target)
            except pa.ArrowInvalid:
                raise src.fail(row, column, f"timestamp {value!r} is not RFC 3339") from None
        raise src.fail(None, column, "timestamps mix values with and without offsets") from None


def _unique_ids(src: _Source, ids: pa.Array, column: str) -> None:
    if len(pc.unique(ids)) == len(ids):  # the common case, one hash pass and no more
        return
    indices, dictionary = dictionary_codes(ids)
    counts = np.bincount(indices[indices >= 0], minlength=len(dictionary))
    if (counts > 1).any():
        repeated = (indices >= 0) & (counts[np.maximum(indices, 0)] > 1)
        _, first = np.unique(indices[repeated], return_index=True)
        rows = np.flatnonzero(repeated)
        seen = np.zeros(len(rows), dtype=bool)
        seen[first] = True
        row = int(rows[~seen][0])
        value = ids[row].as_py()
        raise src.fail(row, column, f"{value!r} appears twice in the export")


def _id_check(src: _Source, ids: pa.Array, column: str) -> Callable[[], None]:
    """:func:`_unique_ids` for later, holding what an error names (not the raw columns)."""
    where = _Source(src.path, pa.table({}), src.first_line, src.is_csv, src.rowmap, src.names)
    return lambda: _unique_ids(where, ids, column)


def _skip_statuses(src: _Source, cmap: ColumnMap) -> _Source:
    """Drop rows whose status the map says to ignore (rounds still in progress, for example)."""
    if not cmap.skip_status_values:
        return src
    status = _required(src, _column(src, cmap, "status"), cmap.source("status"))
    keep = pc.invert(pc.is_in(status, pa.array(sorted(cmap.skip_status_values), pa.string())))
    if pc.all(keep).as_py():
        return src
    rowmap = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
    table = src.table.filter(keep)
    return _Source(src.path, table, src.first_line, src.is_csv, rowmap, src.names)


def load_settlement(
    path: str | Path,
    currencies: CurrencyTable,
    cmap: ColumnMap | None = None,
    *,
    defer_id_check: bool = False,
) -> Settlement:
    """Load and validate ``path``; :class:`SettlementError` names the first bad cell.

    ``defer_id_check``: skip the duplicate transaction id check (the last one made)
    and leave it to :func:`compare.diff.diff`, which hashes every id anyway and sees
    a repeat for nothing; it then calls :attr:`Settlement.check_ids` for the same
    error.  That hash pass is the single most expensive step at ten million rows.
    Exports per round are always checked here.
    """
    cmap = cmap or ColumnMap()
    fast = _reference_csv(Path(path).resolve(), cmap, currencies, defer_id_check)
    if fast is not None:
        return fast
    src = _skip_statuses(_read(Path(path).resolve(), cmap), cmap)
    if cmap.layout == "rounds":
        return _rounds_to_rows(src, cmap, currencies)
    cols = {name: _column(src, cmap, name) for name in cmap.fields()}
    txid = _required(src, cols["transaction_id"], cmap.source("transaction_id"))
    event = _mapped(
        src,
        _required(src, cols["event"], cmap.source("event")),
        cmap.source("event"),
        cmap.event_of(),
    )
    status = _mapped(
        src,
        _required(src, cols["status"], cmap.source("status")),
        cmap.source("status"),
        cmap.status_of(),
    )
    currency = _required(src, cols["currency"], cmap.source("currency"))
    exps = _exponents(src, currency, cmap.source("currency"), currencies)
    amount = _amounts(
        src,
        _required(src, cols["amount"], cmap.source("amount")),
        cmap.source("amount"),
        exps,
        cmap,
    )
    del exps
    _release(src, cols, cmap, "amount")
    settled = _timestamps(src, cols["settled_at"], cmap.source("settled_at"), cmap)
    _release(src, cols, cmap, "settled_at")
    check_ids = _id_check(src, txid, cmap.source("transaction_id"))
    if not defer_id_check:
        check_ids()
    n = src.table.num_rows
    lines = _lines(src)
    table = _export_table(
        [
            txid.cast(pa.string()),
            _or_nulls(cols["round_id"], n),
            _or_nulls(cols["player_id"], n),
            _or_nulls(cols["session_id"], n),
            event,
            pa.array(amount, pa.int64()),
            _text(currency),
            status,
            settled,
            _or_nulls(cols["ref_transaction_id"], n),
            lines,
        ]
    )
    del src, cols
    pa.default_memory_pool().release_unused()  # hand the raw text columns back
    return Settlement(
        Path(path).resolve(), table, "transaction", check_ids if defer_id_check else None
    )


def _reference_csv(
    path: Path, cmap: ColumnMap, currencies: CurrencyTable, defer_id_check: bool
) -> Settlement | None:
    """The export read by :func:`compare.fastcsv.read_reference_csv`, when it is the
    reference CSV in its strict form; None: the careful loader must read it."""
    if cmap != ColumnMap() or path.suffix.lower() in (".parquet", ".pq") or not path.is_file():
        return None
    names, plain = _header(path, cmap)
    parsed = read_reference_csv(path, names, currencies) if plain else None
    if parsed is None:
        return None
    n = parsed.rows
    txid = parsed.texts["transaction_id"]
    check_ids = _id_check(_Source(path, pa.table({}), 2, True, names=names), txid, "transaction_id")
    if not defer_id_check:
        check_ids()
    table = _export_table(
        [
            txid,
            parsed.texts["round_id"],
            parsed.texts["player_id"],
            pa.nulls(n, pa.string()),
            parsed.event,
            parsed.amount,
            parsed.currency,
            parsed.status,
            parsed.settled,
            parsed.texts["ref_transaction_id"],
            pa.array(np.arange(2, 2 + n, dtype=np.int64)),
        ]
    )
    return Settlement(path, table, "transaction", check_ids if defer_id_check else None)


def _rounds_to_rows(src: _Source, cmap: ColumnMap, currencies: CurrencyTable) -> Settlement:
    """A per-round feed (bet and win totals) as two rows per round: ``R:bet`` and ``R:win``.

    Such feeds (Pragmatic's reconciliation CSV) carry no per-movement ids, so the
    diff compares each round's net bet and total win instead; the synthetic ids
    are the keys it builds on the wallet side too (:func:`compare.diff.round_keys`).
    """
    cols = {name: _column(src, cmap, name) for name in cmap.fields()}
    round_id = _required(src, cols["round_id"], cmap.source("round_id")).cast(pa.string())
    status = _mapped(
        src,
        _required(src, cols["status"], cmap.source("status")),
        cmap.source("status"),
        cmap.status_of(),
    )
    currency = _required(src, cols["currency"], cmap.source("currency"))
    exps = _exponents(src, currency, cmap.source("currency"), currencies)
    bet = _amounts(
        src, _required(src, cols["bet"], cmap.source("bet")), cmap.source("bet"), exps, cmap
    )
    win = _amounts(
        src, _required(src, cols["win"], cmap.source("win")), cmap.source("win"), exps, cmap
    )
    settled = _timestamps(src, cols["settled_at"], cmap.source("settled_at"), cmap)
    _unique_ids(src, round_id, cmap.source("round_id"))
    n = src.table.num_rows
    lines = _lines(src)
    halves = []
    for event, amount in (("bet", bet), ("win", win)):
        halves.append(
            _export_table(
                [
                    pc.binary_join_element_wise(round_id, pa.scalar(event), ":"),
                    round_id,
                    _or_nulls(cols["player_id"], n),
                    _or_nulls(cols["session_id"], n),
                    pa.array([event] * n, pa.string()),
                    pa.array(amount, pa.int64()),
                    currency.cast(pa.string()),
                    status.cast(pa.string()),
                    settled,
                    pa.nulls(n, pa.string()),
                    lines,
                ]
            )
        )
    return Settlement(src.path, pa.concat_tables(halves), "round")


def _release(src: _Source, cols: dict[str, pa.Array | None], cmap: ColumnMap, name: str) -> None:
    """Forget a raw text column once converted: the timestamps' text alone is about
    300 MB at ten million rows, and would otherwise live until the load ends."""
    cols[name] = None
    source = cmap.source(name)
    if source in src.table.column_names and not any(
        cmap.source(other) == source for other, col in cols.items() if col is not None
    ):
        src.table = src.table.drop_columns([source])


def _text(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Strings as they are: plain, or the CSV reader's dictionaries (kept, not decoded)."""
    return col if pa.types.is_dictionary(col.type) else col.cast(pa.string())


def _export_table(columns: list[pa.Array | pa.ChunkedArray]) -> pa.Table:
    """:data:`EXPORT_SCHEMA`, where ``event``, ``status`` and ``currency`` may also be
    ``dictionary<int32, string>`` (a CSV export's)."""
    fields = [
        f.with_type(c.type) if pa.types.is_dictionary(c.type) else f
        for f, c in zip(EXPORT_SCHEMA, columns, strict=True)
    ]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _lines(src: _Source) -> pa.Array:
    if src.rowmap is None:
        first = src.first_line
        return pa.array(np.arange(first, first + src.table.num_rows, dtype=np.int64))
    return pa.array(src.rowmap + src.first_line, pa.int64())


def _or_nulls(col: pa.Array | None, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()) if col is None else col.cast(pa.string())
