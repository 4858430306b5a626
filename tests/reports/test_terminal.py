"""The terminal report as exact text at 100 columns on the fixed data set.

Lines are compared after stripping trailing spaces (rich pads table titles to the
table's width); everything else, boxes and alignment included, is exact.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console, RenderableType

from compare.divergence import Kind
from reports.model import Report, load_report
from reports.terminal import (
    CoverageLine,
    ExamplesTable,
    KindTable,
    LatencyLine,
    TerminalReport,
    VerdictLine,
    WorstTables,
    make_console,
)
from reports.testing import FixtureDivergence, write_fixture


def render(renderable: RenderableType, **options: object) -> str:
    console = Console(file=io.StringIO(), width=100, **options)  # type: ignore[arg-type]
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in out.splitlines()) + "\n"


def test_verdict_names_money_at_risk_per_currency_and_the_period(report: Report) -> None:
    assert render(VerdictLine(report)) == (
        "MONEY AT RISK: BTC 0.00150000, EUR 110.50, JPY 300 in 10 divergences\n"
        "divergences/: captured 2025-03-01T10:03:00Z to 2025-03-01T11:35:00Z, "
        "compared 2025-03-01T13:00:00Z\n"
    )


def test_kind_table_counts_and_money_by_kind_and_currency(report: Report) -> None:
    assert (
        render(KindTable(report))
        == """\
Divergences by kind and currency
+------------------------------------------------------------+
| kind                   | currency | count |  money at risk |
|------------------------+----------+-------+----------------|
| MISSING_IN_WALLET      | EUR      |     1 |      EUR 25.50 |
| MISSING_IN_EXPORT      | BTC      |     1 | BTC 0.00150000 |
| AMOUNT_MISMATCH        | EUR      |     1 |       EUR 5.00 |
| CURRENCY_MISMATCH      | EUR      |     1 |      EUR 20.00 |
| STATUS_MISMATCH        | JPY      |     1 |        JPY 300 |
| DOUBLE_APPLIED         | EUR      |     2 |      EUR 60.00 |
| LIVE_RESPONSE_MISMATCH | EUR      |     1 |       EUR 0.00 |
| SLOW_RESPONSE          | EUR      |     2 |       EUR 0.00 |
+------------------------------------------------------------+
"""
    )


def test_coverage_and_latency_lines(report: Report) -> None:
    assert render(CoverageLine(report)) == (
        "Coverage: captured 20, decided 19, matched 16, only in wallet 1, only in export 2\n"
    )
    assert render(LatencyLine(report)) == (
        "Live answers: 20 timed, p50 85 ms, p95 5,000 ms, p99 5,000 ms, max 5,000 ms; "
        "2 took 3 s or more\n"
    )


def test_worst_rounds_and_players_side_by_side_ranked_within_currency(report: Report) -> None:
    assert (
        render(WorstTables(report))
        == """\
Worst rounds                    Worst players
+----------------------------+  +------------------------------+
| round | n |  money at risk |  | player  | n |  money at risk |
|-------+---+----------------|  |---------+---+----------------|
| r-10  | 1 | BTC 0.00150000 |  | p-erin  | 1 | BTC 0.00150000 |
| r-12  | 2 |      EUR 50.00 |  | p-bob   | 3 |      EUR 75.50 |
| r-04  | 1 |      EUR 25.50 |  | p-erin  | 1 |      EUR 20.00 |
| r-11  | 1 |      EUR 20.00 |  | p-alice | 2 |      EUR 15.00 |
| r-06  | 1 |        JPY 300 |  | p-carol | 1 |        JPY 300 |
+----------------------------+  +------------------------------+
"""
    )


def test_examples_show_evidence_and_traffic_as_literal_text(tmp_path: Path) -> None:
    hostile = FixtureDivergence(
        Kind.DOUBLE_APPLIED,
        "tx-1",
        "r-1",
        "[bold red]boom[/]",
        "EUR",
        1000,
        5,
        wallet="APPLIED once",
        live="200 OK twice",
        export="SETTLED 10.00",
        detail="retry \x1b[2J debited again",
    )
    report = load_report(write_fixture(tmp_path, [hostile]))
    assert (
        render(ExamplesTable(report))
        == """\
First divergences of each kind
+--------------------------------------------------------------------------------------------------+
| kind / when          | transaction            | what each side says                              |
|----------------------+------------------------+--------------------------------------------------|
| DOUBLE_APPLIED       | tx-1                   | wallet: APPLIED once                             |
| 2025-03-01T10:05:00Z | bet, at risk EUR 10.00 | live: 200 OK twice                               |
|                      | round r-1              | export: SETTLED 10.00                            |
|                      | player [bold           | why: retry \\x1b[2J debited again                 |
|                      | red]boom[/]            | capture c-0000: POST /rgs/acme -> HTTP 200 in 85 |
|                      |                        | ms                                               |
|                      |                        | request:                                         |
|                      |                        | {"event":"bet","transaction_id":"tx-1","session_ |
|                      |                        | id":"s-[bold re","player_id":"[bold              |
|                      |                        | red]boom[/]","currency":"EUR","amoun             |
+--------------------------------------------------------------------------------------------------+
"""
    )


def test_whole_report_fits_100_columns_and_is_plain_off_a_terminal(report: Report) -> None:
    out = render(TerminalReport(report))
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "\x1b" not in out
    assert '"><img src=x onerror=alert(2)>' in out  # shown, as text
    assert set(out) <= {chr(c) for c in range(32, 127)} | {"\n"}  # ASCII boxes


def test_terminal_gets_colour_and_rounded_boxes(report: Report) -> None:
    out = render(TerminalReport(report), force_terminal=True, color_system="standard")
    assert "\x1b[" in out and "╭" in out
    assert "\x1b[2J" not in out


def test_no_color_on_a_terminal_gives_the_plain_report(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = render(TerminalReport(report))
    monkeypatch.setenv("NO_COLOR", "1")
    assert render(TerminalReport(report), force_terminal=True) == plain


def test_cli_console_is_plain_and_100_wide_when_not_a_terminal(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    stream = io.StringIO()
    console = make_console(stream)
    assert console.width == 100
    console.print(TerminalReport(report))
    assert "\x1b" not in stream.getvalue()
    assert "+---" in stream.getvalue()
