"""Opening balances for a replay that has no snapshot (PROTOCOL.md section 4).

The shadow ledger starts empty, but the live wallet did not: each
``(player, currency)`` opens at the first live balance the capture reveals, less
what the live wallet had moved for that player before and with that callback.
So a pre-pass reads the capture once, in order, and for each account adds up the
live wallet's own accepted money movements (counting each transaction_id once,
since retries are answered from the live wallet's idempotency) until the first
answer that reports a balance.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wallet_core.config import WalletConfig
from wallet_core.dialects import ParseError
from wallet_core.model import Event

from .reader import Captured

__all__ = ["OpeningBalances", "opening_balances"]

_SIGN = {Event.BET: -1, Event.WIN: 1, Event.REFUND: 1}


@dataclass(frozen=True, slots=True)
class OpeningBalances:
    balances: dict[tuple[str, str], int]
    #: First capture time of each account, for the adjustment's timestamp.
    first_seen_us: dict[tuple[str, str], int]
    #: Accounts seen in the capture for which no live answer ever reported a balance.
    unknown: frozenset[tuple[str, str]]


def opening_balances(rows: Iterable[Captured], config: WalletConfig) -> OpeningBalances:
    """Scan ``rows`` (in captured order) and derive each account's opening balance."""
    effect: dict[tuple[str, str], int] = {}
    counted: set[tuple[str, str]] = set()
    opening: dict[tuple[str, str], int] = {}
    first_seen: dict[tuple[str, str], int] = {}
    for row in rows:
        agg = config.aggregators.get(row.aggregator)
        if agg is None:
            continue
        seen = agg.dialect.routing_key(row.body)
        if seen in opening:  # resolved already: skip the full parse (most rows)
            continue
        try:
            cb = agg.dialect.parse(row.body, config.currencies)
        except ParseError:
            continue
        account = (cb.player_id, cb.currency)
        first_seen.setdefault(account, row.captured_at_us)
        if account in opening:
            continue
        live = agg.dialect.read_answer(
            row.response_status, row.response_body, cb.currency, config.currencies
        )
        moved = 0
        key = (row.aggregator, cb.transaction_id or "")
        if live.accepted and cb.event in _SIGN and cb.transaction_id and key not in counted:
            counted.add(key)
            moved = _SIGN[cb.event] * (cb.amount_minor or 0)
        total = effect.get(account, 0) + moved
        if live.balance_minor is not None:
            opening[account] = max(live.balance_minor - total, 0)
        else:
            effect[account] = total
    unknown = frozenset(a for a in first_seen if a not in opening)
    return OpeningBalances(opening, first_seen, unknown)
