"""The tamper-evident audit chain: each row's hash covers the previous row's hash.

The hash input is a length-prefixed encoding of every field, so no choice of
field contents can make two different rows encode alike.  :func:`verify_chain`
walks the rows in sequence order and reports the first one that does not fit:
an edited field, a deleted row (a gap, or a broken link) and two swapped rows
all break either the sequence or the link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .store.base import AuditEntry, AuditRow

__all__ = ["GENESIS", "ChainBreak", "chain_hash", "verify_chain"]

GENESIS = b"\x00" * 32


def _field(value: object) -> bytes:
    if value is None:
        return b"\xff\xff\xff\xff"
    data = value if isinstance(value, bytes) else str(value).encode()
    return len(data).to_bytes(4, "big") + data


def chain_hash(prev_hash: bytes, seq: int, entry: AuditEntry) -> bytes:
    """The hash of row ``seq`` holding ``entry`` after a row hashed ``prev_hash``."""
    h = hashlib.sha256(prev_hash)
    for value in (
        seq,
        entry.at_us,
        entry.aggregator,
        entry.kind,
        entry.headers,
        entry.request,
        entry.decision,
        entry.response,
        entry.player_id,
        entry.currency,
        entry.amount_minor,
        entry.balance_after,
    ):
        h.update(_field(value))
    return h.digest()


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
