"""Fixtures for the compare tests: run the diff on a :class:`compare.testing.Scenario`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from compare.diff import DiffResult, diff
from compare.options import CompareOptions
from compare.settlement import load_settlement
from compare.testing import Scenario
from wallet_core.money import CurrencyTable

RunDiff = Callable[..., DiffResult]


@pytest.fixture
def run_diff(tmp_path: Path) -> RunDiff:
    """Write the scenario's files, load them as the CLI would, and diff them."""

    def run(scn: Scenario, opts: CompareOptions | None = None) -> DiffResult:
        _, export = scn.write(tmp_path / "files")
        settlement = load_settlement(export, CurrencyTable())
        return diff(scn.table(), settlement, CurrencyTable(), opts)

    return run
