"""``rgs-shadow demo`` on the bundled sample finds exactly the planted divergences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shadow.cli_demo import default_sample, run_demo
from tests._server import cli

pytestmark = pytest.mark.slow


def test_sample_expects_every_kind() -> None:
    expected = json.loads((default_sample() / "expected.json").read_text())
    assert {e["kind"] for e in expected} == {
        "MISSING_IN_WALLET",
        "MISSING_IN_EXPORT",
        "AMOUNT_MISMATCH",
        "CURRENCY_MISMATCH",
        "STATUS_MISMATCH",
        "DOUBLE_APPLIED",
        "LIVE_RESPONSE_MISMATCH",
        "SLOW_RESPONSE",
    }


def test_demo_finds_exactly_the_planted_divergences(tmp_path: Path) -> None:
    done = cli("demo", "--out", str(tmp_path / "demo"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "and nothing else" in done.stdout
    assert "MONEY AT RISK" in done.stdout.upper()
    page = tmp_path / "demo" / "report.html"
    assert page.stat().st_size > 10_000
    assert "sim7-win-00077" in page.read_text()


def test_demo_notices_when_findings_differ(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    import shutil

    shutil.copytree(default_sample(), sample)
    expected = json.loads((sample / "expected.json").read_text())
    (sample / "expected.json").write_text(json.dumps(expected[1:]))
    result = run_demo(sample, tmp_path / "out", show_progress=False)
    assert not result.exact
    assert set(result.found) - set(result.expected) == {
        (expected[0]["kind"], expected[0]["transaction_id"])
    }


def test_demo_on_a_directory_that_is_not_a_sample_is_exit_2(tmp_path: Path) -> None:
    done = cli("demo", "--sample", str(tmp_path), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert "not a sample traffic directory" in done.stderr
    assert "Traceback" not in done.stderr
