"""Fixtures for the compare tests: run the diff on a :class:`compare.testing.Scenario`."""

from __future__ import annotations

import subprocess
import sys
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


@pytest.fixture
def loads_ahead(tmp_path: Path) -> Callable[[str, str], None]:
    """Check that ``compare.<module>.load()`` loads the compiled functions ``names`` for
    the very types a comparison then calls them with (numba compiles one function per
    set of argument types).  In a process of its own: what other tests called would
    already be loaded here."""

    def check(module: str, names: str) -> None:
        scn = Scenario()
        scn.clean_day()
        scn.settled("w-lost", "win", 7_00)
        decisions, export = scn.write(tmp_path)
        script = f"""
from pathlib import Path
from compare.{module} import load, {names}
from compare.run import compare_files
from wallet_core.config import WalletConfig
load()
before = [set(f.signatures) for f in ({names},)]
compare_files(Path({str(decisions)!r}), Path({str(export)!r}), WalletConfig(aggregators={{}}))
assert [set(f.signatures) for f in ({names},)] == before, "the diff needed other types"
"""
        subprocess.run([sys.executable, "-c", script], check=True, timeout=300)

    return check
