"""``rgs-shadow compare``, ``reconcile``, ``promote`` and ``demote``.

Exit status (PROTOCOL.md section 6): 0 nothing at risk, 1 money at risk (or a
promotion refused), 2 unusable input with one line on standard error.  Every
:class:`ShadowError` is turned into that line here, so the commands behave the
same under ``CliRunner`` as under the console script.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from wallet_core.errors import InputError, ShadowError

__all__ = ["register"]

ConfigOption = Annotated[Path | None, typer.Option("--config", help="TOML configuration file.")]
DbOption = Annotated[
    str,
    typer.Option("--db", help="sqlite:///relative.db, sqlite:////absolute.db or postgresql://..."),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"rgs-shadow: {message}", err=True)
    return typer.Exit(code)


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    from wallet_core.clock import to_us

    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{name}: {value!r} is not an RFC 3339 time") from None
    return to_us(moment)


def _short_summary(summary: dict[str, Any]) -> None:
    """A few lines for a human at the terminal; the files hold everything."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    table = Table(title="divergences", show_lines=False)
    for column in ("kind", "currency", "count", "at risk (minor)"):
        table.add_column(column)
    for row in summary["by_kind"]:
        table.add_row(
            row["kind"], str(row["currency"]), str(row["count"]), str(row["amount_at_risk_minor"])
        )
    cov = summary["coverage"]
    console.print(table)
    console.print(
        f"decided {cov['decided']}, matched {cov['matched']}, unmatched wallet "
        f"{cov['unmatched_wallet']}, unmatched export {cov['unmatched_export']}; "
        f"money at risk: {'YES' if summary['money_at_risk'] else 'no'}"
    )


def compare(
    decisions: Annotated[Path, typer.Argument(help="Decision file (Parquet) written by replay.")],
    settlement: Annotated[Path, typer.Option("--settlement", help="Settlement export.")],
    out: Annotated[Path, typer.Option("--out", help="DIVERGENCES directory to write.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print divergences as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Diff decisions against live answers and the settlement export (exit 1: money at risk)."""
    try:
        from compare.run import run_compare
        from compare.writer import divergence_dicts, sort_divergences
        from wallet_core.config import load_config

        result, summary = run_compare(decisions, settlement, out, load_config(config))
    except ShadowError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(
            json.dumps(divergence_dicts(sort_divergences(result.divergences)), ensure_ascii=False)
            + "\n"
        )
    else:
        _short_summary(summary)
    raise typer.Exit(1 if summary["money_at_risk"] else 0)


def reconcile(
    db: DbOption,
    settlement: Annotated[Path, typer.Option("--settlement", help="Settlement export.")],
    since: Annotated[str | None, typer.Option("--since", help="RFC 3339 start.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="RFC 3339 end.")] = None,
    alert_webhook: Annotated[
        str | None, typer.Option("--alert-webhook", help="POST the summary here.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="DIVERGENCES directory.")] = None,
    config: ConfigOption = None,
) -> None:
    """Diff the live ledger against the export; exit 1 and alert when money is at risk."""
    try:
        from compare.columnmap import parse_column_map
        from compare.diff import diff
        from compare.options import parse_compare_options
        from compare.reconcile import (
            history_decisions,
            parse_reconcile_options,
            post_alert,
            store_history,
            window_export,
        )
        from compare.settlement import load_settlement
        from compare.summary import build_summary
        from compare.writer import write_evidence
        from wallet_core.clock import now_us
        from wallet_core.config import load_config
        from wallet_core.store import open_store

        cfg = load_config(config)
        opts = parse_compare_options(cfg.sections.get("compare"))
        rec = parse_reconcile_options(cfg.sections.get("reconcile"))
        since_us, until_us = _time(since, "--since"), _time(until, "--until")
        if since_us is None:
            end = until_us if until_us is not None else now_us()
            since_us = end - int(rec["lookback_hours"] * 3_600_000_000)
        export = window_export(
            load_settlement(
                settlement, cfg.currencies, parse_column_map(cfg.sections.get("settlement"))
            ),
            since_us,
            until_us,
        )
        store = open_store(db, create=False)
        try:
            history = store_history(store, since_us, until_us)
        finally:
            store.close()
        table = history_decisions(history)
        result = diff(table, export, cfg.currencies, opts)
        summary = build_summary(
            result,
            table,
            decisions_path=None,
            settlement_path=export.path,
            currencies=cfg.currencies,
            opts=opts,
        )
        summary["reconcile"] = {"db": db.split("@")[-1], "since": since, "until": until}
        if out is not None:
            write_evidence(out, result.divergences, summary)
    except ShadowError as exc:
        raise _fail(str(exc)) from None
    _short_summary(summary)
    if summary["money_at_risk"]:
        if alert_webhook:
            problem = post_alert(alert_webhook, summary, rec["webhook_timeout_seconds"])
            if problem:
                typer.echo(f"rgs-shadow: {problem}", err=True)
        raise typer.Exit(1)


def promote(
    db: DbOption,
    evidence: Annotated[Path, typer.Option("--evidence", help="DIVERGENCES directory.")],
    min_days: Annotated[float, typer.Option("--min-days", help="Days of traffic needed.")] = 7.0,
    min_callbacks: Annotated[
        int, typer.Option("--min-callbacks", help="Decided callbacks needed.")
    ] = 10_000,
    force: Annotated[bool, typer.Option("--force", help="Switch despite refusals.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (needed with --force).")
    ] = None,
) -> None:
    """Switch shadow -> live when the evidence is long enough and has no money at risk."""
    try:
        from compare.promote import read_evidence, refusals, switch_mode
        from wallet_core.store import open_store

        if force and not (reason and reason.strip()):
            raise InputError("--force needs --reason TEXT, which is recorded in the audit log")
        found = read_evidence(evidence)
        refused = refusals(found, min_days=min_days, min_callbacks=min_callbacks)
        if refused and not force:
            raise _fail("promotion refused: " + "; ".join(refused), 1)
        store = open_store(db, create=False)
        try:
            if (store.get_mode() or "shadow") == "live":
                raise _fail("promotion refused: the wallet is already live", 1)
            seq = switch_mode(
                store,
                "live",
                command="promote",
                reason=reason,
                evidence=found,
                forced=force and bool(refused),
                refused=refused,
            )
        finally:
            store.close()
    except ShadowError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wallet is live (audit row {seq}; evidence {found.hashes['summary.json'][:12]})")


def demote(
    db: DbOption,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; recorded.")] = None,
) -> None:
    """Switch the wallet back to shadow mode (recorded in the audit log)."""
    try:
        from compare.promote import switch_mode
        from wallet_core.store import open_store

        store = open_store(db, create=False)
        try:
            if (store.get_mode() or "shadow") == "shadow":
                raise _fail("the wallet is already in shadow mode", 1)
            seq = switch_mode(store, "shadow", command="demote", reason=reason)
        finally:
            store.close()
    except ShadowError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"wallet is in shadow mode (audit row {seq})")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("reconcile")(reconcile)
    app.command("promote")(promote)
    app.command("demote")(demote)
