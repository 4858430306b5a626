"""Stream a capture directory in captured order, one hour partition at a time.

Memory stays bounded by the largest hour, not the whole week: the hour
directories (``date=/hour=``) are listed first, pruned by ``--since``/``--until``,
and each one is read, filtered (time, aggregator) and sorted by
``captured_at`` then ``capture_id`` before the next is touched.  Because the
partition is derived from ``captured_at``, hour-by-hour order is global order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from shadow.dataset import capture_files, open_captures
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


def _check_file(path: Path) -> None:
    """A one-line :class:`InputError` for a file that is not a usable capture file."""
    try:
        names = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"{path}: not a Parquet capture file ({str(exc).splitlines()[0]})"
        ) from None
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise InputError(f"{path}: capture file lacks column {missing[0]}")


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
        for path in files:
            _check_file(path)
        hours = {h for h in (_hour_of(f, self.root) for f in files) if h is not None}
        self.hours = sorted(h for h in hours if self._hour_wanted(*h))
        self._dataset = open_captures(self.root) if files else None

    def _hour_wanted(self, date: str, hour: str) -> bool:
        start = f"{date}T{hour}"
        if self.since_us is not None and start < from_us(self.since_us).strftime("%Y-%m-%dT%H"):
            return False
        return not (
            self.until_us is not None and start > from_us(self.until_us).strftime("%Y-%m-%dT%H")
        )

    def _filter(self, date: str, hour: str) -> ds.Expression:
        expr = (ds.field("date") == date) & (ds.field("hour") == hour)
        if self.aggregator is not None:
            expr &= ds.field("aggregator") == self.aggregator
        stamp = pa.timestamp("us", tz="UTC")
        if self.since_us is not None:
            expr &= ds.field("captured_at") >= pa.scalar(self.since_us, stamp)
        if self.until_us is not None:
            expr &= ds.field("captured_at") < pa.scalar(self.until_us, stamp)
        return expr

    def count(self) -> int:
        """Rows the iteration will yield (a cheap pass over metadata and filters)."""
        if self._dataset is None:
            return 0
        return sum(self._dataset.count_rows(filter=self._filter(d, h)) for d, h in self.hours)

    def tables(self, columns: list[str] = _COLUMNS) -> Iterator[pa.Table]:
        """Each wanted hour, sorted, as tables of at most ``_SLICE`` rows.

        An hour is read whole (its files are in no particular order) but sorted a
        slice at a time (``take`` of the sorted positions), so the hour is never
        held twice.
        """
        if self._dataset is None:
            return
        for date, hour in self.hours:
            table = self._dataset.to_table(columns=columns, filter=self._filter(date, hour))
            order = pc.sort_indices(
                table, sort_keys=[("captured_at", "ascending"), ("capture_id", "ascending")]
            )
            for offset in range(0, table.num_rows, _SLICE):
                yield table.take(order.slice(offset, _SLICE))

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
