"""Immutable records that flow through the wallet core.

A raw request becomes a :class:`Callback` (the dialect's job), the engine turns it
into a :class:`Decision`, and the dialect renders the decision as an
:class:`HttpResponse`.  All money fields are integer minor units.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from .codes import Code

__all__ = [
    "Callback",
    "Decision",
    "Event",
    "HttpResponse",
    "Mode",
    "Outcome",
]


class Event(StrEnum):
    BALANCE = "balance"
    BET = "bet"
    WIN = "win"
    REFUND = "refund"
    SETTLE = "settle"


class Outcome(StrEnum):
    APPLIED = "APPLIED"
    REPEAT = "REPEAT"
    REJECTED = "REJECTED"


class Mode(StrEnum):
    SHADOW = "shadow"
    LIVE = "live"


class Callback(NamedTuple):
    """One parsed, authenticated wallet callback in the engine's own terms.

    Records on the per-callback path are NamedTuples: immutable like frozen
    dataclasses, but several times cheaper to build, which the engine does for
    every callback.
    """

    event: Event
    session_id: str
    player_id: str
    currency: str
    timestamp: str
    transaction_id: str | None = None
    amount_minor: int | None = None
    round_id: str | None = None
    ref_transaction_id: str | None = None
    game_id: str | None = None
    total_bet_minor: int | None = None
    total_win_minor: int | None = None

    def fingerprint_fields(self) -> tuple[object, ...]:
        """Everything but ``timestamp``: a retry may be re-stamped, not changed."""
        return (
            self.event._value_,  # the plain str (``.value`` is a slower enum property)
            self.session_id,
            self.player_id,
            self.currency,
            self.transaction_id,
            self.amount_minor,
            self.round_id,
            self.ref_transaction_id,
            self.game_id,
            self.total_bet_minor,
            self.total_win_minor,
        )


class HttpResponse(NamedTuple):
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


class Decision(NamedTuple):
    """What the wallet decided for one callback, independent of what was sent back.

    ``balance_before``/``balance_after`` are in the session's currency when known.
    ``flags`` carries facts a reconciler wants (``late``, ``tombstone``,
    ``totals_mismatch``...) without changing the answer.
    """

    outcome: Outcome
    code: Code
    http_status: int
    event: str | None = None
    transaction_id: str | None = None
    player_id: str | None = None
    session_id: str | None = None
    round_id: str | None = None
    currency: str | None = None
    amount_minor: int | None = None
    balance_before: int | None = None
    balance_after: int | None = None
    message: str = ""
    flags: tuple[str, ...] = ()
    ref_transaction_id: str | None = None

    @property
    def accepted(self) -> bool:
        return self.code is Code.OK
