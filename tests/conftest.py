"""Shared fixtures: stores on SQLite and (when available) PostgreSQL, and callback factories."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wallet_core.store import Store, open_store
from wallet_core.testing import CallbackFactory

from . import _pg

STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "RGS_SHADOW_SECRET", "RGS_SHADOW_AGGREGATOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "100")


@pytest.fixture
def factory() -> CallbackFactory:
    return CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of a fresh, empty store: SQLite in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wallet.db'}"
    return _pg.fresh_database_url(request)


@pytest.fixture
def pg_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database (skips, or fails in CI, without a server)."""
    return _pg.fresh_database_url(request)


@pytest.fixture
def make_store(store_url: str) -> Iterator[Callable[..., Store]]:
    """Opens stores on ``store_url`` and closes them all at the end of the test."""
    opened: list[Store] = []

    def make(**options: object) -> Store:
        store = open_store(store_url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        try:
            store.close()
        except Exception:
            pass


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
