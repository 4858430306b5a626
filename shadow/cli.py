"""The ``rgs-shadow`` entry point: one Typer app, one sub-module per command group.

Every failure the user can cause ends here as one line on standard error and
exit 2 (PROTOCOL.md section 6); nothing prints a traceback.  Command modules are
imported lazily by the commands themselves, so ``rgs-shadow --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from wallet_core.errors import ShadowError

from . import (
    cli_capture,
    cli_compare,
    cli_demo,
    cli_replay,
    cli_report,
    cli_serve,
    cli_simulate,
    cli_store,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="rgs-shadow",
    help="Shadow-mode capture, replay and reconciliation for casino wallet callbacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli_store.register(app)
cli_serve.register(app)
cli_replay.register(app)
cli_simulate.register(app)
cli_demo.register(app)
cli_capture.register(app)
cli_report.register(app)
cli_compare.register(app)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as the one line of a failure and return the exit to raise."""
    typer.echo(f"rgs-shadow: {message}", err=True)
    return typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Console script: run the app, turning every known error into one line and exit 2."""
    try:
        app(args=argv, prog_name="rgs-shadow", standalone_mode=True)
    except ShadowError as exc:
        typer.echo(f"rgs-shadow: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("rgs-shadow: interrupted", err=True)
        sys.exit(130)
