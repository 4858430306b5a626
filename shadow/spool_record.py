"""What the proxy's hook writes to the spool, and how the compactor completes it into a row.

Why two forms: under load the hook's work is the capture's whole cost to the
proxy (``bench/capture.py``: the same addon with an empty ``response`` hook
costs the proxy nothing measurable), and code that runs once per request
between thousands of mitmproxy's lines runs cold.  So the hook only copies
what mitmproxy already holds (ids, timestamps, the peer tuple, header byte
pairs, capped bodies) into a :class:`SpoolRecord`; parsing the body for the
transaction id and event, the aggregator, the client address text and the
latency are computed by the compactor process (:func:`complete`).

Two cases stay in the hook, because the compactor cannot redo them: a request
body longer than the cap (it is stored cut, and must be identified whole) and
configured body-field redaction (the transaction id is identified before the
body is redacted).  Then ``identified`` is True and the record carries the ids.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from wallet_core.dialects import Dialect, get_dialect

from .capture_record import RECORD_VERSION, CaptureRecord, Headers, decode_record

__all__ = [
    "SPOOL_RECORD_VERSION",
    "Identifier",
    "Identify",
    "SpoolRecord",
    "aggregator_of",
    "client_addr",
    "complete",
    "decode_payload",
    "encode_spool_record",
]

#: First element of a serialised :class:`SpoolRecord` (``RECORD_VERSION`` marks a finished row).
SPOOL_RECORD_VERSION = 2
_GENERIC = get_dialect("generic")
Identify = Callable[[str | None, bytes | None], tuple[str | None, str | None]]


class SpoolRecord(NamedTuple):
    """One exchange as the hook copies it (see the module docstring)."""

    capture_id: str
    started: float  # request start, epoch seconds
    peername: Any  # the client's address tuple as asyncio gave it, or None
    method: str
    path: str
    request_headers: Headers
    request_body: bytes | None  # capped (and redacted when configured)
    response_status: int | None
    response_headers: Headers | None
    response_body: bytes | None
    ended: float  # response end, or the error's time
    error: str | None
    identified: bool  # True: the hook set transaction_id and event (long body or redaction)
    transaction_id: str | None
    event: str | None
    request_body_length: int | None
    response_body_length: int | None
    proxy_id: str


def encode_spool_record(record: SpoolRecord) -> bytes:
    """Serialise for the spool; raises ValueError only for values marshal cannot hold."""
    return marshal.dumps((SPOOL_RECORD_VERSION, *record))


class Identifier:
    """``(transaction_id, event)`` of a request body, read by its aggregator's dialect."""

    def __init__(self, dialects: Mapping[str, Dialect]) -> None:
        self.dialects = dict(dialects)

    @classmethod
    def by_name(cls, names: Mapping[str, str]) -> Identifier:
        return cls({aggregator: get_dialect(name) for aggregator, name in names.items()})

    def __call__(self, aggregator: str | None, body: bytes | None) -> tuple[str | None, str | None]:
        if not body:
            return None, None
        dialect = self.dialects.get(aggregator, _GENERIC) if aggregator else _GENERIC
        try:
            return dialect.identify(body)
        except Exception:  # noqa: BLE001 - identify promises not to raise; belt and braces
            return None, None


def client_addr(peername: Any) -> str | None:
    """``host:port``, ``[v6host]:port`` for IPv6 (whose peername is a 4-tuple)."""
    if not peername:
        return None
    host, port = str(peername[0]), peername[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def aggregator_of(path: str) -> str | None:
    """The ``{aggregator}`` of ``/rgs/{aggregator}`` (query string ignored), else None."""
    parts = path.split("?", 1)[0].split("/")
    if len(parts) >= 3 and parts[0] == "" and parts[1] == "rgs" and parts[2]:
        return parts[2]
    return None


def complete(record: SpoolRecord, identify: Identify) -> CaptureRecord:
    """The row of a spool record: the values the hook left to the compactor, computed."""
    aggregator = aggregator_of(record.path)
    if record.identified:
        txid, event = record.transaction_id, record.event
    else:
        txid, event = identify(aggregator, record.request_body)
    return CaptureRecord(
        capture_id=record.capture_id,
        captured_at=int(record.started * 1_000_000),
        client_addr=client_addr(record.peername),
        method=record.method,
        path=record.path,
        aggregator=aggregator,
        request_headers=record.request_headers,
        request_body=record.request_body,
        response_status=record.response_status,
        response_headers=record.response_headers,
        response_body=record.response_body,
        latency_ms=max(0.0, (record.ended - record.started) * 1000.0),
        error=record.error,
        transaction_id=txid,
        event=event,
        network_duplicate=False,  # the compactor's duplicate tracker decides
        request_body_length=record.request_body_length,
        response_body_length=record.response_body_length,
        proxy_id=record.proxy_id,
    )


def decode_payload(payload: bytes, identify: Identify) -> CaptureRecord:
    """The row of one spool payload of either form; ValueError when it is not one of ours."""
    try:
        values = marshal.loads(payload)
    except (EOFError, TypeError) as exc:
        raise ValueError(f"undecodable spool record: {exc}") from None
    if isinstance(values, tuple) and values and values[0] == SPOOL_RECORD_VERSION:
        if len(values) - 1 != len(SpoolRecord._fields):
            raise ValueError(f"spool record has {len(values) - 1} fields")
        try:
            return complete(SpoolRecord(*values[1:]), identify)
        except (TypeError, AttributeError, IndexError, OverflowError) as exc:
            raise ValueError(f"spool record with a value of the wrong type: {exc}") from None
    if isinstance(values, tuple) and values and values[0] == RECORD_VERSION:
        return decode_record(payload)
    raise ValueError("spool record of an unknown version")
