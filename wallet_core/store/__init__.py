"""Stores: the durable side of the wallet, behind :class:`~.base.Store`.

:func:`open_store` turns a ``--db`` URL into a store: ``sqlite:///relative.db``,
``sqlite:////absolute.db`` or ``postgresql://...``.
"""

from __future__ import annotations

from typing import Any

from wallet_core.errors import ConfigError

from .base import (
    SCHEMA_VERSION,
    AuditEntry,
    AuditRow,
    LedgerEntry,
    RoundRow,
    SessionRow,
    Store,
    StoreTx,
    TxnRow,
)
from .sqlite import SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "AuditEntry",
    "AuditRow",
    "LedgerEntry",
    "RoundRow",
    "SessionRow",
    "SqliteStore",
    "Store",
    "StoreTx",
    "TxnRow",
    "open_store",
    "sqlite_path",
]


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///`` URL (three slashes relative, four absolute)."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"--db: {url!r} is not a sqlite:/// URL")
    path = url[len("sqlite:///") :]
    if not path:
        raise ConfigError("--db: the sqlite URL names no file")
    return path


def open_store(url: str, **options: Any) -> Store:
    """Open the store named by ``url``; options go to the store's constructor."""
    if url.startswith("sqlite:"):
        return SqliteStore(sqlite_path(url), **options)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise ConfigError("--db: the PostgreSQL store is not available in this build") from None
        store: Store = PostgresStore(url, **options)
        return store
    raise ConfigError(f"--db: unsupported URL {url!r} (use sqlite:///FILE or postgresql://...)")
