"""``rgs-shadow audit verify`` catches edits, deletions and swaps (must show 5)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shadow.cli import app
from tests.wallet_core.conftest import make_wallet

runner = CliRunner()


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    wallet = make_wallet(tmp_path / "w.db")
    for i in range(5):
        wallet.send("bet", transaction_id=f"t{i}", amount="1.00", round_id="r1")
    wallet.store.close()
    return tmp_path / "w.db"


def verify(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--db", f"sqlite:///{path}"])
    return result.exit_code, result.output


def test_intact_chain_verifies(ledger: Path) -> None:
    code, out = verify(ledger)
    assert code == 0 and "intact: 9 rows verified" in out


def tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)


def test_edited_amount_is_caught(ledger: Path) -> None:
    tamper(ledger, "UPDATE audit SET amount_minor = 1 WHERE seq = 6")
    code, out = verify(ledger)
    assert code == 1 and "row 6" in out and "edited" in out


def test_edited_request_body_is_caught(ledger: Path) -> None:
    tamper(ledger, "UPDATE audit SET request = replace(request, '1.00', '9.00') WHERE seq = 7")
    code, out = verify(ledger)
    assert code == 1 and "row 7" in out


def test_deleted_row_is_caught(ledger: Path) -> None:
    tamper(ledger, "DELETE FROM audit WHERE seq = 5")
    code, out = verify(ledger)
    assert code == 1 and "row 6" in out and "missing" in out


def test_swapped_rows_are_caught(ledger: Path) -> None:
    tamper(
        ledger,
        "UPDATE audit SET seq = -1 WHERE seq = 6",
        "UPDATE audit SET seq = 6 WHERE seq = 7",
        "UPDATE audit SET seq = 7 WHERE seq = -1",
    )
    code, out = verify(ledger)
    assert code == 1 and "row 6" in out and "link" in out


def test_balance_edited_behind_the_ledger_is_caught(ledger: Path) -> None:
    tamper(ledger, "UPDATE accounts SET balance = balance + 100 WHERE player_id = 'p1'")
    code, out = verify(ledger)
    assert code == 1 and "p1/EUR" in out


def test_missing_database_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", "--db", f"sqlite:///{tmp_path}/none.db"])
    assert result.exit_code != 0
    assert not (tmp_path / "none.db").exists()


def test_db_upgrade_creates_and_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    first = runner.invoke(app, ["db", "upgrade", "--db", url])
    second = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert first.exit_code == 0 and "1 migration" in first.output
    assert second.exit_code == 0 and "0 migration" in second.output


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from shadow.cli import main; main()",
            "audit",
            "verify",
            "--db",
            f"sqlite:///{tmp_path}/none.db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
