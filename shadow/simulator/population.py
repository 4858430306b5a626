"""Simulated players: several currencies, uneven activity, realistic stakes and wins."""

from __future__ import annotations

import random
from dataclasses import dataclass

from wallet_core.money import CurrencyTable, format_amount

__all__ = ["Player", "make_players", "stake", "win_amount"]

CURRENCIES = ("EUR", "JPY", "BTC", "EUR", "USD", "EUR", "JPY", "BTC")
#: (minimum, maximum) opening balance and stake, in minor units.
OPENING = {
    "EUR": (20_000, 80_000),
    "USD": (20_000, 80_000),
    "JPY": (20_000, 80_000),
    "BTC": (1_000_000, 5_000_000),
}
STAKES = {"EUR": (50, 500), "USD": (50, 500), "JPY": (50, 500), "BTC": (5_000, 50_000)}
TABLE = CurrencyTable()


@dataclass(frozen=True, slots=True)
class Player:
    player_id: str
    currency: str
    opening_minor: int
    weight: float

    def money(self, minor: int) -> str:
        return format_amount(minor, TABLE.exponent(self.currency))


def make_players(rng: random.Random, count: int) -> list[Player]:
    """Players with Zipf-like activity: the first plays far more than the last."""
    players = []
    for i in range(count):
        currency = CURRENCIES[i % len(CURRENCIES)]
        low, high = OPENING[currency]
        players.append(
            Player(f"player-{i + 1:03d}", currency, rng.randrange(low, high, 10), 1.0 / (i + 1))
        )
    return players


def stake(rng: random.Random, player: Player) -> int:
    low, high = STAKES[player.currency]
    return rng.randrange(low, high, 10)


def win_amount(rng: random.Random, bet: int) -> int:
    """Zero more often than not; otherwise a multiple of the bet (a slot's payout shape)."""
    roll = rng.random()
    if roll < 0.55:
        return 0
    return bet * rng.choice((1, 1, 2, 2, 3, 5, 10)) // 2
