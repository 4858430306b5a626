"""PostgreSQL for tests: a fresh database per test on the server named by RGS_SHADOW_TEST_PG_URL.

Without that variable the PostgreSQL tests skip with one line saying how to enable
them; in CI (``CI=true``) a missing database fails the run instead.  Each test gets
its own database (created from ``template0``, dropped ``WITH (FORCE)`` at teardown,
which also ends connections a killed server left behind), so tests never share state.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

ENV = "RGS_SHADOW_TEST_PG_URL"
HOW = f"PostgreSQL tests skipped: set {ENV}=postgresql://user@127.0.0.1:5432/postgres to run them"


def server_url() -> str:
    """The admin URL of the test server, or skip (fail in CI) when there is none."""
    url = os.environ.get(ENV)
    if not url:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{ENV} is not set in CI: the PostgreSQL service did not start")
        pytest.skip(HOW)
    return url


def _with_database(url: str, name: str) -> str:
    base, _, tail = url.partition("?")
    head = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{head}/{name}" + (f"?{tail}" if tail else "")


def create_database(admin_url: str) -> tuple[str, str]:
    """Create an empty database; returns ``(name, url)``."""
    name = f"rgs_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0'.encode())
    return name, _with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def fresh_database_url(request: pytest.FixtureRequest) -> str:
    """A URL of a new, empty database, dropped when the requesting test ends."""
    admin = server_url()
    name, url = create_database(admin)
    request.addfinalizer(lambda: drop_database(admin, name))
    return url
