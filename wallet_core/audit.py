"""The tamper-evident audit chain: each row's hash covers the previous row's hash.

The hash input is an injective encoding of every field (see :func:`chain_hash`),
so no choice of field contents can make two different rows encode alike.  :func:`verify_chain`
walks the rows in sequence order and reports the first one that does not fit:
an edited field, a deleted row (a gap, or a broken link) and two swapped rows
all break either the sequence or the link.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations: the stores import this module, and the engine does too
    from .store.base import AuditEntry, AuditRow

__all__ = [
    "AUDIT_COLUMNS",
    "GENESIS",
    "ChainBreak",
    "audit_values",
    "chain_hash",
    "decision_json",
    "headers_json",
    "verify_chain",
]

#: The audit table's columns in the order of :func:`audit_values`.
AUDIT_COLUMNS = (
    "seq, at_us, aggregator, kind, headers, request, decision, response, player_id, currency,"
    " amount_minor, balance_after, prev_hash, hash"
)

GENESIS = b"\x00" * 32


def chain_hash(prev_hash: bytes, seq: int, entry: AuditEntry) -> bytes:
    """The hash of row ``seq`` holding ``entry`` after a row hashed ``prev_hash``.

    The row is encoded as the ``repr`` of a tuple of str, bytes, int and None:
    CPython's repr of these types is fixed and quotes every string, so the
    encoding is injective (no two rows encode alike) and costs one C call.
    """
    fields = (seq, *entry)
    return hashlib.sha256(prev_hash + repr(fields).encode("utf-8", "surrogatepass")).digest()


def headers_json(headers: Mapping[str, str]) -> str:
    """The request headers as the audit row keeps them: compact JSON, keys sorted.

    Byte for byte ``json.dumps(dict(headers), sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``, assembled around json's own string encoder because it runs for
    every callback; anything but str keys and values takes the encoder itself.
    """
    items = headers.items() if type(headers) is dict else dict(headers).items()
    try:
        pairs = [f"{_str(k)}:{_str(v)}" for k, v in sorted(items)]
    except TypeError:
        return _HEADERS_JSON(dict(headers))
    return "{" + ",".join(pairs) + "}"


def decision_json(
    outcome: str,
    code: str,
    http_status: int,
    event: str | None,
    transaction_id: str | None,
    mode: str,
    flags: tuple[str, ...],
) -> str:
    """The decision as the audit row keeps it: compact JSON in a fixed key order.

    ``outcome``, ``code`` and ``mode`` may be StrEnum members, which format as their value.
    """
    return (
        f'{{"outcome":"{outcome}","code":"{code}","http_status":{http_status},'
        f'"event":{"null" if event is None else _str(event)},'
        f'"transaction_id":{"null" if transaction_id is None else _str(transaction_id)},'
        f'"mode":"{mode}","flags":[{",".join([_str(flag) for flag in flags])}]}}'
    )


#: What ``json.dumps(..., ensure_ascii=False)`` applies to every str.
_str = encode_basestring
_HEADERS_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def audit_values(
    seq: int, entry: AuditEntry, prev_hash: bytes, digest: bytes
) -> tuple[object, ...]:
    """One audit row as stored, in :data:`AUDIT_COLUMNS` order (every store writes this)."""
    return (seq, *entry, prev_hash, digest)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first row that does not verify, and why (a finding, not an exception)."""

    seq: int
    reason: str


def verify_chain(rows: Iterable[AuditRow]) -> tuple[int, ChainBreak | None]:
    """Walk ``rows`` in stored order; return how many verified and the first break, if any."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for row in rows:
        if row.seq != expected_seq:
            what = "missing" if row.seq > expected_seq else "out of order"
            return count, ChainBreak(row.seq, f"row {expected_seq} is {what} before row {row.seq}")
        if row.prev_hash != prev:
            return count, ChainBreak(row.seq, "its link to the previous row is broken")
        if chain_hash(prev, row.seq, row.entry) != row.hash:
            return count, ChainBreak(row.seq, "its content does not match its hash (edited)")
        prev = row.hash
        expected_seq += 1
        count += 1
    return count, None
