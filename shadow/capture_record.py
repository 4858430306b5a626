"""One captured exchange as the spool stores it, and the step from records to Arrow.

The addon's hooks must cost microseconds, so a record is a flat tuple of plain
values in :data:`~shadow.capture_schema.CAPTURE_COLUMNS` order, serialised with
:mod:`marshal` (about 1 µs, and unlike pickle it never runs code while loading a
file found on disk).  Headers stay as mitmproxy's ``(name, value)`` byte pairs
in the record and are decoded into JSON only in the compactor process, off the
proxy's event loop (str pairs when redaction had to decode them first).
``network_duplicate`` is written False by the proxy and decided by the compactor.

Header JSON format (the ``request_headers``/``response_headers`` columns): one
JSON object, names lower-cased, a repeated header's values joined with ``", "``
(RFC 9110 section 5.3).  Lower-case names let replay hand the object straight to
``Dialect.verify``, which looks up ``x-rgs-signature``.
"""

from __future__ import annotations

import json
import marshal
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "RECORD_VERSION",
    "CaptureRecord",
    "Headers",
    "decode_record",
    "encode_record",
    "headers_json",
    "hour_key",
    "partition_of",
    "records_to_table",
    "utf8_safe",
]

#: First element of every serialised tuple; bump when the tuple layout changes.
RECORD_VERSION = 1

#: Header pairs: as mitmproxy holds them (bytes) unless redaction had to decode them (str).
Headers = tuple[tuple[bytes, bytes], ...] | tuple[tuple[str, str], ...]
#: ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` without a new encoder per call.
_HEADERS_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_SURROGATE = re.compile("[\ud800-\udfff]")


class CaptureRecord(NamedTuple):
    """The values of one row, in the order of the contract's columns.

    A named tuple, not a dataclass: the proxy builds one per request, and a
    tuple is built in one step where a frozen dataclass sets 19 attributes.
    """

    capture_id: str
    captured_at: int  # microseconds since the epoch, UTC
    client_addr: str | None
    method: str | None
    path: str | None
    aggregator: str | None
    request_headers: Headers
    request_body: bytes | None
    response_status: int | None
    response_headers: Headers | None
    response_body: bytes | None
    latency_ms: float | None
    error: str | None
    transaction_id: str | None
    event: str | None
    network_duplicate: bool
    request_body_length: int | None
    response_body_length: int | None
    proxy_id: str | None


_FIELDS: tuple[str, ...] = CaptureRecord._fields
_HEADER_COLUMNS = frozenset({"request_headers", "response_headers"})


def encode_record(record: CaptureRecord) -> bytes:
    """Serialise for the spool; raises ValueError only for values marshal cannot hold."""
    return marshal.dumps((RECORD_VERSION, *record))


def decode_record(payload: bytes) -> CaptureRecord:
    """The record of one spool payload; ValueError when it is not one of ours."""
    try:
        values = marshal.loads(payload)
    except (EOFError, TypeError) as exc:
        raise ValueError(f"undecodable spool record: {exc}") from None
    if not isinstance(values, tuple) or not values or values[0] != RECORD_VERSION:
        raise ValueError("spool record of an unknown version")
    body = values[1:]
    if len(body) != len(_FIELDS):
        raise ValueError(f"spool record has {len(body)} fields, expected {len(_FIELDS)}")
    return CaptureRecord(*body)


def headers_json(headers: Iterable[tuple[str, str] | tuple[bytes, bytes]] | None) -> str | None:
    """The column form of a header list (see the module docstring).

    Bytes (as the proxy records them) are decoded here, undecodable ones as
    U+FFFD: Arrow strings must be UTF-8.
    """
    if headers is None:
        return None
    merged: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("utf-8", "replace") if isinstance(raw_value, bytes) else raw_value
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return _HEADERS_ENCODE(merged)


def hour_key(captured_at: int) -> int:
    """Hours since the epoch: the grouping key of one ``date=/hour=`` partition."""
    return captured_at // 3_600_000_000


def partition_of(hour: int) -> tuple[str, str]:
    """``(date, hour)`` partition values (UTC) for an :func:`hour_key`."""
    moment = datetime.fromtimestamp(hour * 3600, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%H")


def utf8_safe(value: str) -> str:
    """``value`` if Arrow can store it; lone surrogates (from a JSON ``\\ud800`` escape or
    undecodable path bytes) become U+FFFD, so one hostile callback cannot jam compaction."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def records_to_table(records: Sequence[CaptureRecord]) -> pa.Table:
    """An Arrow table in :data:`CAPTURE_SCHEMA`; columns the record lacks are null.

    Built column by column (one transpose, one Arrow conversion per column).
    pyarrow is imported here, not at the top: the proxy imports this module for
    :func:`encode_record` and should not load pyarrow for it.
    """
    import pyarrow as pa

    from .capture_schema import CAPTURE_SCHEMA

    count = len(records)
    transposed = zip(*records, strict=True) if count else ()
    columns: dict[str, Sequence[Any]] = dict(zip(_FIELDS, transposed, strict=bool(count)))
    arrays = []
    for field in CAPTURE_SCHEMA:
        values = columns.get(field.name, [] if count == 0 and field.name in _FIELDS else None)
        if values is None:
            arrays.append(pa.nulls(count, field.type))
        elif field.name == "captured_at":
            arrays.append(pa.array(values, type=pa.int64()).cast(field.type))
        else:
            if field.name in _HEADER_COLUMNS:
                values = [headers_json(v) for v in values]
            arrays.append(_array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=CAPTURE_SCHEMA)


def _array(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    import pyarrow as pa

    try:
        return pa.array(values, type=kind)
    except UnicodeEncodeError:  # a lone surrogate somewhere: only this column pays
        return pa.array([utf8_safe(v) if isinstance(v, str) else v for v in values], type=kind)
