from __future__ import annotations

from pathlib import Path

import pytest

from wallet_core import CurrencyTable, OperatorApi, WalletConfig
from wallet_core.errors import InputError
from wallet_core.snapshot import read_snapshot
from wallet_core.store import SqliteStore


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "snap.csv"
    path.write_text(text)
    return path


def test_reads_and_imports_once(tmp_path: Path) -> None:
    rows = read_snapshot(
        write(tmp_path, "player_id,currency,balance\np1,EUR,10.50\np2,JPY,300\n"), CurrencyTable()
    )
    assert rows == [("p1", "EUR", 1050), ("p2", "JPY", 300)]
    store = SqliteStore(":memory:")
    api = OperatorApi(store, WalletConfig.single())
    api.import_snapshot(rows, 0)
    api.import_snapshot(rows, 0)
    assert store.balances() == {("p1", "EUR"): 1050, ("p2", "JPY"): 300}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("player,currency,balance\n", ":1: missing column player_id"),
        ("player_id,currency,balance\np1,EUR,1.001\n", ":2: column balance"),
        ("player_id,currency,balance\np1,EUR,1\np1,XXX,1\n", ":3: column currency"),
        ("player_id,currency,balance\np1,EUR,1\np1,EUR,2\n", ":3: p1/EUR appears twice"),
        ("player_id,currency,balance\n,EUR,1\n", ":2: column player_id"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(InputError, match=where):
        read_snapshot(write(tmp_path, text), CurrencyTable())


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_snapshot(tmp_path / "none.csv", CurrencyTable())
