"""The terminal report: rich renderables over the report model, 100 columns wide.

Each section is an object that renders itself (``__rich_console__``), so the CLI prints
:class:`TerminalReport` and tests print one section at a time.  Output is plain (ASCII
boxes, no styles) when the console has no colours: not a terminal, or ``NO_COLOR`` set,
because that text ends up in logs, mails and CI output where box-drawing characters
and escape codes are noise.  Every value from traffic goes in as :class:`Text` with
control characters made visible: never as markup, never as raw escape codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import IO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from .model import Example, Report, Worst

__all__ = [
    "CoverageLine",
    "ExamplesTable",
    "KindTable",
    "LatencyLine",
    "NotesBlock",
    "TerminalReport",
    "VerdictLine",
    "WorstTables",
    "make_console",
]

WIDTH = 100
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c not in (0x0A,)}


def safe(value: object) -> Text:
    """Untrusted text as a rich Text: no markup parsed, control characters shown as ``\\xNN``."""
    return Text("" if value is None else str(value).translate(_CONTROL))


def make_console(file: IO[str] | None = None) -> Console:
    """A console for the CLI: at most :data:`WIDTH` columns; colours only on a terminal."""
    stream = file if file is not None else sys.stdout
    probe = Console(file=stream)
    plain = not probe.is_terminal or "NO_COLOR" in os.environ
    return Console(
        file=stream,
        width=min(probe.width, WIDTH) if probe.is_terminal else WIDTH,
        color_system=None if plain else "auto",
        highlight=False,
        soft_wrap=False,
    )


def _plain(console: Console) -> bool:
    return console.no_color or console.color_system is None


def _table(console: Console, title: str | None = None) -> Table:
    plain = _plain(console)
    return Table(
        title=title,
        title_justify="left",
        box=box.ASCII if plain else box.ROUNDED,
        header_style="" if plain else "bold",
        title_style="" if plain else "bold",
        show_edge=True,
        pad_edge=True,
    )


class VerdictLine:
    """The one line to read first: is money at risk, how much, and over which period."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        verdict = self.report.verdict
        style = (
            ""
            if _plain(console)
            else ("bold white on red" if verdict.money_at_risk else "bold white on green")
        )
        line = Text(verdict.headline, style=style)
        line.append(verdict.text[len(verdict.headline) :])
        yield line
        r = self.report
        yield Text(
            f"{r.source}/: captured {r.first or '?'} to {r.last or '?'}, "
            f"compared {r.generated_at or '?'}",
            style="" if _plain(console) else "dim",
        )


class KindTable:
    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = _table(console, "Divergences by kind and currency")
        table.add_column("kind")
        table.add_column("currency")
        table.add_column("count", justify="right")
        table.add_column("money at risk", justify="right")
        for row in self.report.kinds:
            table.add_row(row.kind, safe(row.currency), str(row.count), safe(row.at_risk))
        if not self.report.kinds:
            table.add_row("(none)", "", "0", "")
        yield table


class CoverageLine:
    """How much of the traffic the comparison saw; low numbers make a clean verdict weak."""

    LABELS = (
        ("captured", "captured"),
        ("decided", "decided"),
        ("matched", "matched"),
        ("unmatched_wallet", "only in wallet"),
        ("unmatched_export", "only in export"),
    )

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        cov = self.report.coverage
        parts = [
            f"{label} {'?' if cov.get(key) is None else cov[key]}" for key, label in self.LABELS
        ]
        yield Text("Coverage: " + ", ".join(parts))


class LatencyLine:
    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lat = self.report.latency
        if lat is None:
            yield Text("Live answers: no latency recorded")
            return

        def ms(value: float | None) -> str:
            return "?" if value is None else f"{value:,.0f} ms"

        yield Text(
            f"Live answers: {lat.count} timed, p50 {ms(lat.p50)}, p95 {ms(lat.p95)}, "
            f"p99 {ms(lat.p99)}, max {ms(lat.max)}; {lat.over_3s} took 3 s or more"
        )


class WorstTables:
    """Worst rounds and worst players side by side, ranked within each currency."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def _one(self, console: Console, title: str, label: str, rows: Iterable[Worst]) -> Table:
        table = _table(console, title)
        table.add_column(label, overflow="fold", max_width=16)
        table.add_column("n", justify="right")
        table.add_column("money at risk", justify="right")
        for w in rows:
            table.add_row(safe(w.key), str(w.count), safe(w.at_risk))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        grid = Table.grid(padding=(0, 2))
        grid.add_column()
        grid.add_column()
        grid.add_row(
            self._one(console, "Worst rounds", "round", self.report.worst_rounds),
            self._one(console, "Worst players", "player", self.report.worst_players),
        )
        yield grid


class ExamplesTable:
    """The first divergences of each kind, with what each side said and the capture behind."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = _table(console, "First divergences of each kind")
        table.add_column("kind / when", max_width=24, overflow="fold")
        table.add_column("transaction", max_width=22, overflow="fold")
        table.add_column("what each side says", overflow="fold", ratio=1)
        for examples in self.report.examples.values():
            for example in examples:
                table.add_row(*self._cells(example))
        yield table

    @staticmethod
    def _cells(example: Example) -> tuple[Text, Text, Text]:
        row = example.row
        kind = Text(row.kind + "\n")
        kind.append(row.at or "time unknown")
        tx = Text.assemble(
            safe(row.transaction_id or "(no id)"),
            f"\n{row.event or '?'}, at risk ",
            safe(row.at_risk),
            "\nround ",
            safe(row.round_id or "?"),
            "\nplayer ",
            safe(row.player_id or "?"),
        )
        says = Text()
        for label, value in (
            ("wallet", row.wallet_says),
            ("live", row.live_says),
            ("export", row.export_says),
        ):
            says.append(f"{label}: ")
            says.append_text(safe(value if value is not None else "(nothing)"))
            says.append("\n")
        if row.detail:
            says.append("why: ")
            says.append_text(safe(row.detail))
            says.append("\n")
        for cap in example.evidence.captures:
            status = cap.error or f"HTTP {cap.response_status}"
            latency = "" if cap.latency_ms is None else f" in {cap.latency_ms:,.0f} ms"
            says.append(f"capture {cap.capture_id}: {cap.method or '?'} ")
            says.append_text(safe(cap.path))
            says.append(f" -> {status}{latency}\nrequest: ")
            says.append_text(safe(" ".join(cap.request_body.split())[:120]))
            says.append("\n")
        missing = [
            c
            for c in row.capture_ids
            if c not in {cap.capture_id for cap in example.evidence.captures}
        ]
        if missing:
            says.append("capture not found: ")
            says.append_text(safe(", ".join(missing)))
        says.rstrip()
        return kind, tx, says


class NotesBlock:
    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for note in self.report.notes:
            yield Text.assemble("note: ", safe(note))


class TerminalReport:
    """The whole terminal report, sections in reading order."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        r = self.report
        sections: list[RenderableType] = [
            VerdictLine(r),
            Text(),
            KindTable(r),
            CoverageLine(r),
            LatencyLine(r),
            Text(),
            WorstTables(r),
        ]
        if r.examples:
            sections += [Text(), ExamplesTable(r)]
        if r.notes:
            sections += [Text(), NotesBlock(r)]
        yield Group(*sections)
