"""The fixed data set of :mod:`reports.testing`, written once per test into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.model import Report, load_report
from reports.testing import write_fixture


@pytest.fixture
def divergences_dir(tmp_path: Path) -> Path:
    return write_fixture(tmp_path)


@pytest.fixture
def report(divergences_dir: Path) -> Report:
    return load_report(divergences_dir)
