"""``rgs-shadow report DIVERGENCES [--html FILE] [--json]``: read a compare output, show it.

The exit status carries the verdict (PROTOCOL.md section 6: 1 when money is at risk,
0 otherwise) so a nightly job can alert on it without parsing the output; a missing or
malformed DIVERGENCES directory is one line on standard error and exit 2.  The reports
package (and rich) is imported inside the command so ``rgs-shadow --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from wallet_core.errors import ShadowError

__all__ = ["register"]


def report(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIVERGENCES", help="The directory written by rgs-shadow compare --out."
        ),
    ],
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write the self-contained HTML page."),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the report model as JSON instead of the text report."),
    ] = False,
) -> None:
    """Print the divergence report; exit 1 when money is at risk, 0 otherwise."""
    from reports.html import write_html
    from reports.model import load_report
    from reports.terminal import TerminalReport, make_console

    try:
        model = load_report(directory)
    except ShadowError as exc:
        typer.echo(f"rgs-shadow: {exc}", err=True)
        raise typer.Exit(2) from None
    written = None
    if html is not None:
        try:
            written = write_html(model, html)
        except OSError as exc:
            typer.echo(f"rgs-shadow: cannot write {html}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(model.to_dict(), indent=2, ensure_ascii=False))
    else:
        make_console().print(TerminalReport(model))
    if written is not None:
        typer.echo(f"HTML report: {html} ({written:,} bytes)", err=as_json)
    raise typer.Exit(1 if model.verdict.money_at_risk else 0)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
