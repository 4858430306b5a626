"""Rich progress bars and summaries for long commands (the CLI's rendering, not the engine's)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from replay.run import ReplayOptions, ReplaySummary

__all__ = ["progress_bar", "summary_table"]


class TransferSpeedLessRate(ProgressColumn):
    """Items per second, in plain numbers."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s")


@contextmanager
def progress_bar(label: str, options: ReplayOptions) -> Iterator[Callable[[int], None]]:
    """A bar with rate and time left; disappears when standard error is not a terminal."""
    from replay.reader import CaptureReader

    total = CaptureReader(
        options.capture_dir,
        since_us=options.since_us,
        until_us=options.until_us,
        aggregator=options.aggregator,
    ).count()
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TransferSpeedLessRate(),
        TimeRemainingColumn(),
    )
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        task = progress.add_task(label, total=total or None)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance


def summary_table(summary: ReplaySummary, file: IO[str]) -> None:
    """The end-of-run summary in plain words, one table."""
    console = Console(file=file, width=100)
    # A line of its own: as the title of a narrow table it wrapped mid-sentence.
    console.print(
        f"replay: {summary.callbacks:,} callbacks in {summary.elapsed_s:.1f} s "
        f"({summary.rate:,.0f}/s)",
        highlight=False,
    )
    table = Table(show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    for outcome, n in sorted(summary.outcomes.items()):
        table.add_row(f"outcome {outcome}", f"{n:,}")
    for code, n in sorted(summary.codes.items()):
        table.add_row(f"code {code}", f"{n:,}")
    for marker, n in sorted(summary.injected.items()):
        table.add_row(f"injected {marker}", f"{n:,}")
    if summary.dropped:
        table.add_row("injected drops (not driven)", f"{summary.dropped:,}")
    table.add_row("opening balances", f"{summary.openings:,}")
    if summary.processes > 1:
        table.add_row("processes (--jobs)", f"{summary.processes:,}")
    if summary.unknown_openings:
        table.add_row(
            "accounts with no live balance (opened at 0)", f"{summary.unknown_openings:,}"
        )
    console.print(table)
    console.print(f"decisions written to {summary.out}")
