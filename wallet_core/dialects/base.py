"""The small interface every aggregator dialect implements.

The engine only ever sees :class:`~wallet_core.model.Callback` and
:class:`~wallet_core.model.Decision`; everything about a wire format (field
names, signature scheme, status words, amount scale) lives behind this protocol,
so a new aggregator is a new module here and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from wallet_core.codes import Code
from wallet_core.model import Callback, Decision, HttpResponse
from wallet_core.money import CurrencyTable

__all__ = ["Dialect", "LiveAnswer", "ParseError"]


class ParseError(ValueError):
    """The body is not a valid callback of this dialect; answered as ``BAD_REQUEST``."""


@dataclass(frozen=True, slots=True)
class LiveAnswer:
    """What a captured live response said, in the engine's vocabulary (None when unknown)."""

    accepted: bool | None
    code: str | None
    balance_minor: int | None


class Dialect(Protocol):
    name: str

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        """True when the request is authentic; constant time over the signature."""
        ...

    def sign(self, body: bytes, secret: bytes) -> dict[str, str]:
        """Headers that make ``body`` verify: for simulators, tests and benchmarks."""
        ...

    def parse(self, body: bytes, currencies: CurrencyTable) -> Callback:
        """Parse and validate a body, raising :class:`ParseError` with a plain message."""
        ...

    def identify(self, body: bytes) -> tuple[str | None, str | None]:
        """``(transaction_id, event)`` for capture indexing; never raises, never validates."""
        ...

    def routing_key(self, body: bytes) -> tuple[str | None, str | None]:
        """``(player_id, currency)`` for ordering and sharding; never raises, never validates."""
        ...

    def render(self, decision: Decision, currencies: CurrencyTable) -> HttpResponse:
        """The exact answer for a decision (live mode)."""
        ...

    def render_mock(self, decision: Decision, currencies: CurrencyTable) -> HttpResponse:
        """The shadow-mode answer: success with the shadow balance, whatever was decided."""
        ...

    def render_both(
        self, decision: Decision, currencies: CurrencyTable
    ) -> tuple[HttpResponse, HttpResponse]:
        """``(render(decision), render_mock(decision))``, exactly; shadow mode needs both.

        A dialect whose two answers coincide for some decisions (a plain success, say)
        builds that answer once and returns it twice.
        """
        ...

    def read_answer(
        self,
        status: int | None,
        body: bytes | None,
        currency: str | None,
        currencies: CurrencyTable,
    ) -> LiveAnswer:
        """Interpret a captured response of a live wallet speaking this dialect."""
        ...


def error_code(value: object) -> str | None:
    """A code string if it is one we know, else the raw value (kept for reporting)."""
    if not isinstance(value, str):
        return None
    return Code(value).value if value in Code.__members__ else value
