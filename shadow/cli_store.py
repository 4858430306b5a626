"""``rgs-shadow audit verify`` and ``rgs-shadow db upgrade``: the store's own commands."""

from __future__ import annotations

from typing import Annotated

import typer

from wallet_core.audit import verify_chain
from wallet_core.store import open_store

__all__ = ["register"]

DbOption = Annotated[
    str,
    typer.Option("--db", help="sqlite:///relative.db, sqlite:////absolute.db or postgresql://..."),
]

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
db_app = typer.Typer(help="Storage maintenance.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(db: DbOption) -> None:
    """Walk the audit chain; exit 1 and name the first bad row when it is broken."""
    store = open_store(db, create=False)
    try:
        count, broken = verify_chain(store.audit_rows())
        ledger, balances = store.ledger_sums(), store.balances()
    finally:
        store.close()
    if broken is not None:
        typer.echo(
            f"audit chain BROKEN at row {broken.seq}: {broken.reason} "
            f"({count} rows verified before it)"
        )
        raise typer.Exit(1)
    drift = sorted(k for k in set(ledger) | set(balances) if ledger.get(k, 0) != balances.get(k, 0))
    if drift:
        player, currency = drift[0]
        typer.echo(
            f"audit chain intact ({count} rows) but the balance of {player}/{currency} "
            f"differs from its ledger entries"
        )
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {count} rows verified; balances match the ledger")


@db_app.command("upgrade")
def db_upgrade(db: DbOption) -> None:
    """Apply pending storage migrations (creating the store if it is new)."""
    store = open_store(db, migrate=True)
    applied = getattr(store, "migrations_applied", 0)
    store.close()
    typer.echo(f"store is up to date ({applied} migration(s) applied)")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.add_typer(db_app, name="db")
