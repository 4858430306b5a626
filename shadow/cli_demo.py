"""``rgs-shadow demo``: replay, compare and report on the bundled ``sample_traffic/``.

The sample was captured by a real ``rgs-shadow capture`` run of the simulator in
front of a deliberately faulty wallet; ``expected.json`` beside it lists every
divergence the chain must find.  The demo runs the whole chain on the embedded
SQLite default, prints the terminal report, writes the HTML page, checks its own
findings against ``expected.json`` and says where to go next.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from wallet_core.errors import InputError

__all__ = ["DemoResult", "default_sample", "register", "run_demo"]

_SECRET_ENV = "RGS_SHADOW_SAMPLE_SECRET"


def default_sample() -> Path:
    """``sample_traffic/`` of the source tree this package runs from."""
    return Path(__file__).resolve().parent.parent / "sample_traffic"


@dataclass(frozen=True)
class DemoResult:
    callbacks: int
    found: list[tuple[str, str]]
    expected: list[tuple[str, str]]
    divergences: Path

    @property
    def exact(self) -> bool:
        """Every expected divergence was found, and nothing else."""
        return self.found == self.expected


def run_demo(sample: Path, out: Path, *, show_progress: bool = True) -> DemoResult:
    """Run replay and compare on ``sample`` into ``out``; the report is rendered by the caller."""
    from compare.run import run_compare
    from replay.run import ReplayOptions, run_replay
    from wallet_core.config import load_config

    from .simulator.sample import SAMPLE_SECRET

    for name in ("capture", "settlement.csv", "config.toml", "expected.json"):
        if not (sample / name).exists():
            raise InputError(f"{sample}: not a sample traffic directory (no {name})")
    os.environ.setdefault(_SECRET_ENV, SAMPLE_SECRET)
    config = load_config(sample / "config.toml").require_secrets()
    out.mkdir(parents=True, exist_ok=True)
    decisions = out / "decisions.parquet"
    options = ReplayOptions(capture_dir=sample / "capture", out=decisions, config=config)
    if show_progress:
        from .cli_progress import progress_bar

        with progress_bar("replaying sample traffic", options) as advance:
            replayed = run_replay(options, advance)
    else:
        replayed = run_replay(options)
    divergences = out / "divergences"
    result, _ = run_compare(decisions, sample / "settlement.csv", divergences, config)
    found = sorted({(str(d.kind), d.transaction_id or "") for d in result.divergences})
    expected_doc = json.loads((sample / "expected.json").read_text())
    expected = sorted({(e["kind"], e["transaction_id"]) for e in expected_doc})
    return DemoResult(replayed.callbacks, found, expected, divergences)


def demo(
    sample: Annotated[
        Path | None, typer.Option("--sample", help="Sample traffic directory.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Where decisions, divergences and the page go.")
    ] = Path("rgs-shadow-demo"),
) -> None:
    """Replay, compare and report on sample_traffic/ (no capture, no server needed)."""
    from reports.html import write_html
    from reports.model import load_report
    from reports.terminal import TerminalReport, make_console

    sample = sample or default_sample()
    result = run_demo(sample, out)
    model = load_report(result.divergences)
    page = out / "report.html"
    write_html(model, page)
    make_console().print(TerminalReport(model))
    found, expected = result.found, result.expected
    typer.echo("")
    if result.exact:
        typer.echo(
            f"The demo replayed {result.callbacks} captured callbacks and found all "
            f"{len(expected)} divergences planted in {sample} (see its README), and nothing else."
        )
    else:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        typer.echo(
            f"The findings differ from {sample / 'expected.json'}: "
            f"missing {missing}, unexpected {extra}."
        )
    typer.echo(f"HTML report: {page.resolve()}")
    typer.echo(
        "Next: open the HTML page; then put `rgs-shadow capture` in front of your own wallet "
        "(README: 'A first week in shadow mode')."
    )
    raise typer.Exit(0 if result.exact else 1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
