"""Stream a capture directory in captured order, one hour partition at a time.

Memory stays bounded by the largest hour, not the whole week: the hour
directories (``date=/hour=``) are listed first, pruned by ``--since``/``--until``,
and each one is read, filtered (time, aggregator) and sorted by
``captured_at`` then ``capture_id`` before the next is touched.  Because the
partition is derived from ``captured_at``, hour-by-hour order is global order.

Files are read with :class:`pyarrow.parquet.ParquetFile`, not ``pyarrow.dataset``:
the dataset module imports pandas, about 30 MB in every replay process (and each
``--jobs`` worker is one) for nothing the reader needs.  Each file is brought to
the one capture schema here instead: a column it lacks reads as nulls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from shadow.capture_files import capture_files
from shadow.capture_schema import CAPTURE_SCHEMA
from wallet_core.clock import from_us
from wallet_core.errors import InputError

__all__ = ["Captured", "CaptureReader"]

_SLICE = 10_000
#: Columns without which a captured callback cannot be replayed at all.
REQUIRED = ("capture_id", "captured_at", "aggregator", "request_headers", "request_body")
_COLUMNS = [
    "capture_id",
    "captured_at",
    "aggregator",
    "request_headers",
    "request_body",
    "response_status",
    "response_body",
    "latency_ms",
    "error",
    "network_duplicate",
]
#: What the bootstrap pre-pass reads (see :meth:`CaptureReader.rows`).
_LIGHT = [c for c in _COLUMNS if c not in ("request_headers", "latency_ms", "error")]


@dataclass(slots=True)
class Captured:
    """One captured callback, as replay needs it."""

    capture_id: str
    captured_at_us: int
    aggregator: str
    request_headers: str | None
    body: bytes
    response_status: int | None
    response_body: bytes | None
    latency_ms: float | None
    error: str | None
    network_duplicate: bool

    @property
    def headers(self) -> dict[str, str]:
        """The request headers, lower-cased; parsed on use (the bootstrap pass never needs them)."""
        return _headers(self.request_headers)


def _hour_of(path: Path, root: Path) -> tuple[str, str] | None:
    parts = dict(p.split("=", 1) for p in path.relative_to(root).parts[:-1] if "=" in p)
    if "date" in parts and "hour" in parts:
        return parts["date"], parts["hour"]
    return None


#: The object scanner of a default decoder: ``json.loads`` minus its per-call wrappers.
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _headers(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        doc, end = _SCAN(text, 0)
    except (ValueError, StopIteration):
        end = -1
    if end != len(text):  # surrounding whitespace, extra data or an error: the decoder decides
        try:
            doc = json.loads(text)
        except ValueError:
            return {}
    if type(doc) is dict:  # keys of a JSON object are always str
        return {k.lower(): v if type(v) is str else str(v) for k, v in doc.items()}
    if isinstance(doc, list):  # [[name, value], ...] keeps repeated headers
        return {str(p[0]).lower(): str(p[1]) for p in doc if isinstance(p, list) and len(p) == 2}
    return {}


def _check_file(path: Path) -> pa.Schema:
    """The file's schema, or a one-line :class:`InputError` if it is not a usable capture file."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"{path}: not a Parquet capture file ({str(exc).splitlines()[0]})"
        ) from None
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise InputError(f"{path}: capture file lacks column {missing[0]}")
    return schema


def _read_file(path: Path, schema: pa.Schema, columns: list[str]) -> pa.Table:
    """``columns`` of one file in the capture schema's types; a column it lacks is all null."""
    present = [c for c in columns if c in schema.names]
    try:
        table = pq.ParquetFile(path).read(columns=present)
        arrays = []
        for name in columns:
            kind = CAPTURE_SCHEMA.field(name).type
            if name not in schema.names:
                arrays.append(pa.nulls(table.num_rows, kind))
                continue
            column = table.column(name)
            arrays.append(column if column.type == kind else column.cast(kind))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: unreadable capture file ({str(exc).splitlines()[0]})") from None
    return pa.Table.from_arrays(arrays, names=columns)


class CaptureReader:
    """Iterates :class:`Captured` rows of ``capture_dir`` in order; see the module docstring."""

    def __init__(
        self,
        capture_dir: str | Path,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        aggregator: str | None = None,
    ) -> None:
        self.root = Path(capture_dir)
        self.since_us, self.until_us, self.aggregator = since_us, until_us, aggregator
        try:
            files = capture_files(self.root)
        except FileNotFoundError:
            raise InputError(f"{self.root}: capture directory does not exist") from None
        if not files:
            raise InputError(f"{self.root}: no capture files (date=YYYY-MM-DD/hour=HH/*.parquet)")
        #: Each hour's files with their schemas; files outside ``date=/hour=`` are not data.
        self._files: dict[tuple[str, str], list[tuple[Path, pa.Schema]]] = {}
        for path in files:
            schema = _check_file(path)
            hour = _hour_of(path, self.root)
            if hour is not None:
                self._files.setdefault(hour, []).append((path, schema))
        self.hours = sorted(h for h in self._files if self._hour_wanted(*h))

    def _hour_wanted(self, date: str, hour: str) -> bool:
        start = f"{date}T{hour}"
        if self.since_us is not None and start < from_us(self.since_us).strftime("%Y-%m-%dT%H"):
            return False
        return not (
            self.until_us is not None and start > from_us(self.until_us).strftime("%Y-%m-%dT%H")
        )

    def _filtered(self, table: pa.Table) -> pa.Table:
        """The rows of ``table`` within ``--since``/``--until`` and of ``--aggregator``."""
        masks = []
        if self.aggregator is not None:
            masks.append(pc.equal(table.column("aggregator"), self.aggregator))
        stamps = table.column("captured_at")
        stamp = pa.timestamp("us", tz="UTC")
        if self.since_us is not None:
            masks.append(pc.greater_equal(stamps, pa.scalar(self.since_us, stamp)))
        if self.until_us is not None:
            masks.append(pc.less(stamps, pa.scalar(self.until_us, stamp)))
        if not masks:
            return table
        mask = masks[0]
        for more in masks[1:]:
            mask = pc.and_kleene(mask, more)
        return table.filter(mask)  # a null (aggregator) is not a match: dropped

    def _hour(self, hour: tuple[str, str], columns: list[str]) -> pa.Table:
        parts = [_read_file(path, schema, columns) for path, schema in self._files[hour]]
        return self._filtered(parts[0] if len(parts) == 1 else pa.concat_tables(parts))

    def stored_rows(self) -> int:
        """Rows of the wanted hours as stored, before filters (file metadata only)."""
        return sum(
            pq.ParquetFile(path).metadata.num_rows
            for hour in self.hours
            for path, _ in self._files[hour]
        )

    def count(self) -> int:
        """Rows the iteration will yield (metadata only, unless a filter needs two columns)."""
        if self.aggregator is None and self.since_us is None and self.until_us is None:
            return self.stored_rows()
        return sum(self._hour(h, ["captured_at", "aggregator"]).num_rows for h in self.hours)

    def tables(self, columns: list[str] = _COLUMNS) -> Iterator[pa.Table]:
        """Each wanted hour, sorted, as tables of at most ``_SLICE`` rows.

        An hour is read whole (its files are in no particular order) but sorted a
        slice at a time (``take`` of the sorted positions), so the hour is never
        held twice.  Arrow's allocator keeps freed memory for reuse; it is handed
        back after each hour, or every process would hold its largest hour's worth
        twice over for the rest of the run.
        """
        pool = pa.default_memory_pool()
        for hour in self.hours:
            table = self._hour(hour, columns)
            order = pc.sort_indices(
                table, sort_keys=[("captured_at", "ascending"), ("capture_id", "ascending")]
            )
            for offset in range(0, table.num_rows, _SLICE):
                yield table.take(order.slice(offset, _SLICE))
            del table, order
            pool.release_unused()

    def __iter__(self) -> Iterator[Captured]:
        return self.rows()

    def rows(
        self, *, light: bool = False, keep: Callable[[str, str, bytes], bool] | None = None
    ) -> Iterator[Captured]:
        """The rows in order; ``light`` leaves out what only the replay itself needs.

        A light row has no request headers, latency or error (``None``): the bootstrap
        pre-pass reads the whole capture once more and never looks at them.  ``keep``
        (capture id, aggregator, body) chooses rows before the rest of them is built.
        """
        for part in self.tables(_LIGHT if light else _COLUMNS):
            # Python objects for one slice at a time: an hour stays in Arrow's compact form.
            yield from _rows(part if keep is None else _kept(part, keep))


def _kept(table: pa.Table, keep: Callable[[str, str, bytes], bool]) -> pa.Table:
    mask = [
        keep(cid, agg or "", body or b"")
        for cid, agg, body in zip(
            table.column("capture_id").to_pylist(),
            table.column("aggregator").to_pylist(),
            table.column("request_body").to_pylist(),
            strict=True,
        )
    ]
    return table.filter(pa.array(mask, pa.bool_()))


def _rows(table: pa.Table) -> Iterator[Captured]:
    """Rows of one slice; a column the table leaves out reads as ``None``."""
    n = table.num_rows
    stamps = pc.cast(table.column("captured_at"), pa.int64()).to_pylist()
    names = set(table.column_names)

    def column(name: str) -> list[Any]:
        return table.column(name).to_pylist() if name in names else [None] * n

    for cid, at, agg, headers, body, status, answer, latency, error, dup in zip(
        column("capture_id"),
        stamps,
        column("aggregator"),
        column("request_headers"),
        column("request_body"),
        column("response_status"),
        column("response_body"),
        column("latency_ms"),
        column("error"),
        column("network_duplicate"),
        strict=True,
    ):
        yield Captured(
            cid, at, agg or "", headers, body or b"", status, answer, latency, error, dup is True
        )
