"""compare.fastcsv: the one-pass reader answers only for files it reads exactly as the
careful loader does, and leaves every other file, and every error, to it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compare import fastcsv, settlement
from compare.columnmap import ROW_FIELDS
from compare.fastcsv import read_reference_csv
from compare.settlement import Settlement, SettlementError, load_settlement
from wallet_core.money import CurrencyTable

NAMES = list(ROW_FIELDS)  # the reference header, in its order
HEADER = ",".join(NAMES)
GOOD = "t1,r1,p1,s1,bet,10.00,EUR,SETTLED,2026-11-25T12:00:00Z,"


def careful(path: Path) -> Settlement | str:
    """What the careful loader alone makes of ``path`` (its table, or its error)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(settlement, "read_reference_csv", lambda *a, **k: None)
        return loaded(path)


def loaded(path: Path) -> Settlement | str:
    try:
        return load_settlement(path, CurrencyTable())
    except SettlementError as exc:
        return str(exc)


def assert_same(fast: Settlement | str, slow: Settlement | str) -> None:
    if isinstance(slow, str) or isinstance(fast, str):
        assert fast == slow
        return
    assert fast.table.schema.equals(slow.table.schema)
    for name in fast.table.column_names:
        a, b = fast.table.column(name), slow.table.column(name)
        if pa.types.is_dictionary(a.type):  # the same values; dictionaries in any order
            a, b = a.cast(pa.string()), b.cast(pa.string())
        assert a.to_pylist() == b.to_pylist(), name


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode())
    return path


def test_the_reference_csv_is_read_in_one_pass_as_the_careful_loader_reads_it(
    tmp_path: Path,
) -> None:
    rows = [
        GOOD,
        '"t2","r1","p1","s1","win","0.5","EUR","SETTLED","2026-11-25 12:00:01.5+02:00",',
        "t3,,p2,,refund,3,JPY,CANCELLED,,t1",
        "t4,r9,p3,s,bet,0,USD,DECLINED,2024-02-29T23:59:59.123456-01:30,",
        'bonus-7,r9,p3,"",bet,0.07,KWD,SETTLED,1999-12-31T23:59:59Z,""',
    ]
    path = write(tmp_path, HEADER + "\n" + "\n".join(rows) + "\n")
    parsed = read_reference_csv(path, NAMES, CurrencyTable(), threads=2)
    assert parsed is not None and parsed.rows == 5
    assert parsed.amount.to_pylist() == [1000, 50, 3, 0, 70]
    fast = loaded(path)
    assert not isinstance(fast, str)
    assert fast.table.column("line").to_pylist() == [2, 3, 4, 5, 6]
    assert_same(fast, careful(path))


def test_crlf_lines_other_column_orders_and_unknown_columns(tmp_path: Path) -> None:
    names = list(reversed(NAMES)) + ["extra"]
    rows = ",2026-01-01T00:00:00Z,SETTLED,EUR,1.5,win,,p,r,a,x", ",,SETTLED,EUR,2,bet,s,p,r,b,y"
    path = write(tmp_path, ",".join(names) + "\r\n" + "\r\n".join(rows) + "\r\n")
    assert read_reference_csv(path, names, CurrencyTable()) is not None
    assert_same(loaded(path), careful(path))


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ('t1,r1,p1,s1,bet,"1""0",EUR,SETTLED,,', "an escaped quote"),
        ("t1,r1,p1,s1,bet,10.001,EUR,SETTLED,,", "more decimals than the currency"),
        ("t1,r1,p1,s1,bet,0.1x,EUR,SETTLED,,", "not an amount"),
        ("t1,r1,p1,s1,bet,010,EUR,SETTLED,,", "a leading zero"),
        ("t1,r1,p1,s1,bet,-1,EUR,SETTLED,,", "a sign"),
        ("t1,r1,p1,s1,bet,1,XXX,SETTLED,,", "an unknown currency"),
        ("t1,r1,p1,s1,bet,1,eur,SETTLED,,", "a currency in lower case"),
        ("t1,r1,p1,s1,BET,1,EUR,SETTLED,,", "an event spelled otherwise"),
        ("t1,r1,p1,s1,bet,1,EUR,settled,,", "a status spelled otherwise"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED,2026-11-25T12:00:00,", "a time without offset"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED,2026-02-29T12:00:00Z,", "a day that does not exist"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED,2026-11-25T24:00:00Z,", "hour 24"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED,2026-11-25T12:00:00.1234567Z,", "nanoseconds"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED,2026-11-25T12:00Z,", "no seconds"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED,,,", "a cell too many"),
        ("t1,r1,p1,s1,bet,1,EUR,SETTLED", "cells missing"),
        (",r1,p1,s1,bet,1,EUR,SETTLED,,", "an empty transaction id"),
        ("tö,r1,p1,s1,bet,1,EUR,SETTLED,,", "a byte outside ASCII"),
        ('t1,"r\n1",p1,s1,bet,1,EUR,SETTLED,,', "a line break in a cell"),
        ("t1,r1,p1,s1,bet,,EUR,SETTLED,,", "an empty amount"),
    ],
)
def test_anything_outside_the_strict_form_is_left_to_the_careful_loader(
    tmp_path: Path, row: str, why: str
) -> None:
    path = write(tmp_path, f"{HEADER}\n{GOOD}\n{row}\n")
    assert read_reference_csv(path, NAMES, CurrencyTable()) is None, why
    assert_same(loaded(path), careful(path))


def test_files_it_does_not_read(tmp_path: Path) -> None:
    unended = write(tmp_path, f"{HEADER}\n{GOOD}")
    assert read_reference_csv(unended, NAMES, CurrencyTable()) is None
    assert_same(loaded(unended), careful(unended))
    only_header = write(tmp_path, f"{HEADER}\n")
    assert read_reference_csv(only_header, NAMES, CurrencyTable()) is None
    assert read_reference_csv(write(tmp_path, ""), NAMES, CurrencyTable()) is None
    missing = [n for n in NAMES if n != "currency"]
    assert read_reference_csv(unended, missing, CurrencyTable()) is None
    assert read_reference_csv(unended, NAMES + ["event"], CurrencyTable()) is None


def test_a_repeated_id_is_still_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n{GOOD}\n{GOOD.replace('bet', 'win')}\n")
    assert read_reference_csv(path, NAMES, CurrencyTable()) is not None
    message = loaded(path)
    assert message == careful(path)
    assert isinstance(message, str) and "line 3" in message and "appears twice" in message


cells = {
    "transaction_id": st.sampled_from(["t1", "t2", "x-9", '"t3"', ""]),
    "event": st.sampled_from(["bet", "win", "refund", "Bet", ""]),
    "amount": st.sampled_from(
        ["0", "1", "10.5", "0.01", "1.234", "007", "1e3", "", "999999999999999999"]
    ),
    "currency": st.sampled_from(["EUR", "JPY", "KWD", "XXX", ""]),
    "status": st.sampled_from(["SETTLED", "DECLINED", "CANCELLED", "OK"]),
    "settled_at": st.sampled_from(
        ["", "2026-01-01T00:00:00Z", "2026-01-01 00:00:59.9+05:30", "2026-01-01T00:00:00", "x"]
    ),
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.fixed_dictionaries(cells), min_size=1, max_size=6))
def test_any_file_loads_as_the_careful_loader_loads_it(
    tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    names = list(cells) + ["round_id", "player_id", "session_id", "ref_transaction_id"]
    lines = [",".join(names)] + [",".join(row.get(n, "") for n in names) for row in rows]
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert_same(loaded(path), careful(path))


def test_no_room_for_the_rows_leaves_it_to_the_careful_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, f"{HEADER}\n{GOOD}\n")

    def no_memory(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(fastcsv, "_parse", no_memory)
    assert read_reference_csv(path, NAMES, CurrencyTable()) is None
    assert_same(loaded(path), careful(path))
