"""``rgs-shadow replay``: captured traffic through the wallet core, decisions to Parquet."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from wallet_core.clock import to_us
from wallet_core.config import load_config
from wallet_core.errors import InputError

__all__ = ["parse_jobs", "parse_shard", "parse_speed", "parse_time", "register", "replay"]


def parse_time(text: str | None, option: str) -> int | None:
    """RFC 3339 (``2026-11-25T12:00:00Z``) or a date (``2026-11-25``, midnight UTC)."""
    if text is None:
        return None
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{option}: {text!r} is not an RFC 3339 time or a date") from None
    return to_us(moment)


def parse_speed(text: str) -> float | None:
    """``max`` (None), ``1x`` (captured pace) or ``Nx`` (N times faster)."""
    if text == "max":
        return None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)x", text)
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--speed: {text!r} is not max, 1x or Nx")
    return float(match.group(1))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``K/N`` with 1 <= K <= N: this process replays the players of shard K."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise InputError(f"--shard: {text!r} is not K/N with 1 <= K <= N")
    return int(match.group(1)), int(match.group(2))


def parse_jobs(text: str) -> int:
    """``--jobs N`` (``auto`` is decided once the capture is known)."""
    if not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise InputError(f"--jobs: {text!r} is not auto or a number of processes (1 or more)")
    return int(text)


def _rate(value: float, option: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{option}: {value} is not between 0 and 1")
    return value


def replay(
    capture_dir: Annotated[Path, typer.Argument(help="Capture directory (date=/hour= Parquet).")],
    out: Annotated[Path, typer.Option("--out", help="Decisions file to write (Parquet).")],
    db: Annotated[
        str | None, typer.Option("--db", help="Ledger URL (default: scratch SQLite).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML configuration.")] = None,
    snapshot: Annotated[
        Path | None, typer.Option("--snapshot", help="CSV player_id,currency,balance.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Replay from this time.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Replay before this time.")] = None,
    aggregator: Annotated[str | None, typer.Option("--aggregator", help="Only this one.")] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Drive a running wallet at this URL over HTTP.")
    ] = None,
    speed: Annotated[str, typer.Option("--speed", help="max, 1x or Nx (with --target).")] = "max",
    shard: Annotated[str | None, typer.Option("--shard", help="K/N: players of shard K.")] = None,
    duplicate_rate: Annotated[
        float, typer.Option("--duplicate-rate", help="Resend this share of callbacks.")
    ] = 0.0,
    reorder_window: Annotated[
        int, typer.Option("--reorder-window", help="Shuffle within W callbacks of a player.")
    ] = 0,
    drop_rate: Annotated[float, typer.Option("--drop-rate", help="Skip this share.")] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fault injection.")] = 0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="HTTP requests in flight.")
    ] = 32,
    jobs: Annotated[
        str,
        typer.Option(
            "--jobs", help="Processes for in-process replay (split by player): N or auto."
        ),
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar, no summary.")] = False,
) -> None:
    """Drive captured callbacks through the wallet core and write the decisions."""
    from replay.faults import FaultPlan
    from replay.run import ReplayOptions, run_replay

    if not capture_dir.is_dir():
        raise InputError(f"{capture_dir}: capture directory does not exist")
    if reorder_window < 0 or concurrency < 1:
        raise InputError("--reorder-window must be >= 0 and --concurrency >= 1")
    if target is not None and not re.match(r"https?://", target):
        raise InputError(f"--target: {target!r} is not an http:// or https:// URL")
    if snapshot is not None and not snapshot.is_file():
        raise InputError(f"--snapshot: {snapshot} does not exist")
    options = ReplayOptions(
        capture_dir=capture_dir,
        out=out,
        config=load_config(config).require_secrets(),
        db_url=db,
        snapshot=snapshot,
        since_us=parse_time(since, "--since"),
        until_us=parse_time(until, "--until"),
        aggregator=aggregator,
        target=target,
        speed=parse_speed(speed),
        shard=parse_shard(shard),
        faults=FaultPlan(
            _rate(duplicate_rate, "--duplicate-rate"),
            reorder_window,
            _rate(drop_rate, "--drop-rate"),
            seed,
        ),
        concurrency=concurrency,
        jobs=1 if jobs == "auto" else parse_jobs(jobs),
    )
    if jobs == "auto":
        from replay.parallel import auto_jobs
        from replay.reader import CaptureReader

        stored = CaptureReader(capture_dir, since_us=options.since_us, until_us=options.until_us)
        options = dataclasses.replace(options, jobs=auto_jobs(options, stored.stored_rows()))
    if quiet:
        run_replay(options)
        return
    from .cli_progress import progress_bar, summary_table

    with progress_bar("replaying", options) as advance:
        summary = run_replay(options, advance)
    summary_table(summary, file=sys.stdout)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
