"""Fault injection for rehearsals: duplicates, local reordering and drops.

Deterministic from a seed.  Duplicates are exact resends of a callback right
after it (what a retrying aggregator does); reordering shuffles callbacks within
a window of the same player's traffic; drops skip callbacks.  Every injected row
carries a marker in the decision file's ``injected`` column.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from .reader import Captured

__all__ = ["FaultPlan", "inject"]


@dataclass(frozen=True, slots=True)
class FaultPlan:
    duplicate_rate: float = 0.0
    reorder_window: int = 0
    drop_rate: float = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return bool(self.duplicate_rate or self.reorder_window > 1 or self.drop_rate)


def inject(
    rows: Iterable[Captured],
    plan: FaultPlan,
    player_of: Callable[[Captured], str],
    dropped: list[str],
) -> Iterator[tuple[Captured, str | None]]:
    """Yield ``(row, marker)`` with faults applied; dropped capture ids go to ``dropped``."""
    rng = random.Random(plan.seed)
    stream: Iterable[tuple[Captured, str | None]] = ((r, None) for r in rows)
    if plan.reorder_window > 1:
        stream = _reorder(stream, plan.reorder_window, rng, player_of)
    for row, marker in stream:
        if plan.drop_rate and rng.random() < plan.drop_rate:
            dropped.append(row.capture_id)
            continue
        yield row, marker
        if plan.duplicate_rate and rng.random() < plan.duplicate_rate:
            yield replace(row, capture_id=f"{row.capture_id}#dup"), "duplicate"


def _reorder(
    stream: Iterable[tuple[Captured, str | None]],
    window: int,
    rng: random.Random,
    player_of: Callable[[Captured], str],
) -> Iterator[tuple[Captured, str | None]]:
    """Shuffle each player's callbacks in consecutive blocks of ``window``.

    A block is released once full (or at the end), so memory holds at most one
    block per active player.  Rows whose position changed are marked.
    """
    blocks: dict[str, list[Captured]] = {}
    for row, _ in stream:
        block = blocks.setdefault(player_of(row), [])
        block.append(row)
        if len(block) >= window:
            yield from _shuffled(blocks.pop(player_of(row)), rng)
    for block in blocks.values():
        yield from _shuffled(block, rng)


def _shuffled(block: list[Captured], rng: random.Random) -> Iterator[tuple[Captured, str | None]]:
    order = list(range(len(block)))
    rng.shuffle(order)
    for position, index in enumerate(order):
        yield block[index], ("reordered" if position != index else None)
