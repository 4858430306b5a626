"""PostgreSQL for tests: a fresh database per test on the server named by RGS_SHADOW_TEST_PG_URL.

Without that variable the PostgreSQL tests skip with one line saying how to enable
them; in CI (``CI=true``) a missing database fails the run instead.
"""

from __future__ import annotations

import os

import pytest

ENV = "RGS_SHADOW_TEST_PG_URL"
HOW = f"PostgreSQL tests skipped: set {ENV}=postgresql://user@127.0.0.1:5432/postgres to run them"


def fresh_database_url(request: pytest.FixtureRequest) -> str:
    url = os.environ.get(ENV)
    if not url:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{ENV} is not set in CI: the PostgreSQL service did not start")
        pytest.skip(HOW)
    pytest.skip("the PostgreSQL store is not built yet")
