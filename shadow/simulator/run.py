"""One simulator run: play, then write the export, the planted faults and a summary."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from .client import AggregatorClient
from .export import EXPORT_KINDS, plant, write_export
from .population import make_players
from .scenario import Operator, Simulation

__all__ = ["SimulationOptions", "run_simulation"]


@dataclass(frozen=True)
class SimulationOptions:
    target: str
    aggregator: str
    secret: bytes
    seed: int
    out: Path
    players: int = 12
    rounds: int = 80
    faults: tuple[str, ...] = ()
    operator_url: str | None = None
    admin_token: str | None = None
    session_timeout_s: float = 3.0


def parse_faults(text: str | None) -> tuple[str, ...]:
    """``all`` or a comma-separated list of export divergence kinds."""
    if not text:
        return ()
    if text.strip().lower() == "all":
        return EXPORT_KINDS
    kinds = tuple(k.strip().upper() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in EXPORT_KINDS]
    if unknown:
        raise ValueError(
            f"--faults: unknown kind {unknown[0]} (known: all, {', '.join(EXPORT_KINDS)})"
        )
    return kinds


def run_simulation(options: SimulationOptions) -> dict[str, object]:
    """Play the aggregator against ``options.target``; returns the summary it also writes."""
    rng = random.Random(options.seed)
    players = make_players(rng, options.players)
    client = AggregatorClient(options.target, options.aggregator, options.secret)
    operator = None
    if options.operator_url and options.admin_token:
        operator = Operator(options.operator_url, options.admin_token)
    prefix = f"sim{options.seed}"
    sim = Simulation(
        client, players, rng, prefix, options.aggregator, operator, options.session_timeout_s
    )
    try:
        sim.play(options.rounds)
    finally:
        client.close()
    protected = {t for ids in sim.scenarios.values() for t in ids}
    rows, planted = plant(list(sim.export.values()), list(options.faults), rng, protected, prefix)
    options.out.mkdir(parents=True, exist_ok=True)
    write_export(options.out / "settlement.csv", rows)
    (options.out / "planted.json").write_text(json.dumps(planted, indent=2) + "\n")
    summary: dict[str, object] = {
        "seed": options.seed,
        "aggregator": options.aggregator,
        "callbacks_sent": client.sent,
        "players": [
            {"player_id": p.player_id, "currency": p.currency, "opening": p.money(p.opening_minor)}
            for p in players
        ],
        "export_rows": len(rows),
        "scenarios": sim.scenarios,
        "planted": planted,
    }
    (options.out / "simulation.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
