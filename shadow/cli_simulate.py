"""``rgs-shadow simulate``: play an aggregator against a wallet URL, deterministic from a seed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from wallet_core.config import load_config
from wallet_core.errors import ConfigError, InputError

__all__ = ["register", "simulate"]


def simulate(
    target: Annotated[str, typer.Option("--target", help="Wallet (or capture proxy) base URL.")],
    aggregator: Annotated[str, typer.Option("--aggregator", help="The {aggregator} in /rgs/.")],
    seed: Annotated[int, typer.Option("--seed", help="Everything but timestamps follows it.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the export and planted.json.")],
    players: Annotated[int, typer.Option("--players", help="How many players.", min=3)] = 12,
    rounds: Annotated[int, typer.Option("--rounds", help="How many game rounds.", min=8)] = 80,
    faults: Annotated[
        str | None, typer.Option("--faults", help="Plant export discrepancies: all or K1,K2.")
    ] = None,
    operator_url: Annotated[
        str | None,
        typer.Option(
            "--operator-url",
            help="Open sessions and deposits through this wallet's "
            "operator API (token in RGS_SHADOW_ADMIN_TOKEN).",
        ),
    ] = None,
    session_timeout: Annotated[
        float,
        typer.Option(
            "--session-timeout-s",
            help="The wallet's session timeout: the late win waits this long plus a second.",
        ),
    ] = 3.0,
    config: Annotated[Path | None, typer.Option("--config", help="TOML configuration.")] = None,
) -> None:
    """Play an aggregator: rounds of bets, wins and settles, retries, refunds, late wins."""
    from .simulator.run import SimulationOptions, parse_faults, run_simulation

    if not re.match(r"https?://", target):
        raise InputError(f"--target: {target!r} is not an http:// or https:// URL")
    wallet_config = load_config(config)
    agg = wallet_config.aggregators.get(aggregator)
    if agg is None:
        raise ConfigError(
            f"--aggregator: {aggregator!r} is not configured "
            f"(known: {', '.join(sorted(wallet_config.aggregators))})"
        )
    if not agg.secret:
        raise ConfigError(
            f"aggregators.{aggregator}.secret_env: environment variable {agg.secret_env} is not set"
        )
    try:
        kinds = parse_faults(faults)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    token = os.environ.get("RGS_SHADOW_ADMIN_TOKEN")
    if operator_url and not token:
        raise InputError("--operator-url needs the admin token in RGS_SHADOW_ADMIN_TOKEN")
    summary = run_simulation(
        SimulationOptions(
            target=target,
            aggregator=aggregator,
            secret=agg.secret,
            seed=seed,
            out=out,
            players=players,
            rounds=rounds,
            faults=kinds,
            operator_url=operator_url,
            admin_token=token,
            session_timeout_s=session_timeout,
        )
    )
    typer.echo(
        f"simulated {summary['callbacks_sent']} callbacks; export and planted "
        f"discrepancies written to {out}"
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
