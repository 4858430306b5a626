"""The answer codes of the reference dialect and the HTTP status each one travels with.

Codes are the vocabulary shared by the engine, the dialects, replay and compare:
a dialect maps its own wire statuses onto these, never the other way round.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["HTTP_STATUS", "RETRYABLE", "Code"]


class Code(StrEnum):
    OK = "OK"
    BAD_REQUEST = "BAD_REQUEST"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    PLAYER_BLOCKED = "PLAYER_BLOCKED"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    DUPLICATE_MISMATCH = "DUPLICATE_MISMATCH"
    ROUND_CLOSED = "ROUND_CLOSED"
    ALREADY_REFUNDED = "ALREADY_REFUNDED"
    RETRY_LATER = "RETRY_LATER"


HTTP_STATUS: dict[Code, int] = {
    Code.OK: 200,
    Code.BAD_REQUEST: 400,
    Code.INVALID_SIGNATURE: 401,
    Code.INSUFFICIENT_FUNDS: 402,
    Code.PLAYER_BLOCKED: 403,
    Code.SESSION_NOT_FOUND: 404,
    Code.CURRENCY_MISMATCH: 409,
    Code.DUPLICATE_MISMATCH: 409,
    Code.ROUND_CLOSED: 409,
    Code.ALREADY_REFUNDED: 409,
    Code.RETRY_LATER: 503,
}

#: Outcomes that are transient: not remembered by idempotency, nothing written.
RETRYABLE = frozenset({Code.RETRY_LATER})
