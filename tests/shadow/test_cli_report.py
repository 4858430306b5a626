"""``rgs-shadow report``: exit status carries the verdict; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from compare.divergence import Kind
from reports.testing import FixtureDivergence, write_fixture
from shadow import cli_report

app = typer.Typer()
cli_report.register(app)


@app.callback()
def _group() -> None:
    """Keeps ``report`` a sub-command, as in the real app."""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_money_at_risk_exits_1_with_the_report(tmp_path: Path) -> None:
    code, out, _ = run("report", str(write_fixture(tmp_path)))
    assert code == 1
    assert out.startswith("MONEY AT RISK: BTC 0.00150000, EUR 110.50, JPY 300")
    assert "Divergences by kind and currency" in out


def test_nothing_at_risk_exits_0(tmp_path: Path) -> None:
    slow = FixtureDivergence(Kind.SLOW_RESPONSE, "tx-1", "r-1", "p-1", "EUR", 0, 1)
    code, out, _ = run("report", str(write_fixture(tmp_path, [slow])))
    assert code == 0
    assert out.startswith("NO MONEY AT RISK")


def test_html_and_json(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    code, out, err = run("report", str(write_fixture(tmp_path)), "--html", str(page), "--json")
    assert code == 1
    assert json.loads(out)["verdict"]["totals"] == ["BTC 0.00150000", "EUR 110.50", "JPY 300"]
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert err.startswith(f"HTML report: {page} (")


def test_missing_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = run("report", str(tmp_path / "nowhere"))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("rgs-shadow: ")
    assert "Traceback" not in err


def test_directory_without_summary_is_exit_2(tmp_path: Path) -> None:
    out_dir = write_fixture(tmp_path)
    (out_dir / "summary.json").unlink()
    code, _, err = run("report", str(out_dir))
    assert code == 2
    assert "no summary.json" in err


def test_unwritable_html_path_is_exit_2(tmp_path: Path) -> None:
    code, _, err = run(
        "report", str(write_fixture(tmp_path)), "--html", str(tmp_path / "no" / "such" / "dir.html")
    )
    assert code == 2
    assert err.startswith("rgs-shadow: cannot write")
