"""Settlement loaders: the reference CSV, Parquet, column maps, a per-round feed, bad input."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compare.columnmap import parse_column_map
from compare.diff import diff
from compare.settlement import SettlementError, load_settlement
from compare.testing import Scenario
from wallet_core.errors import ConfigError
from wallet_core.money import CurrencyTable

HEADER = "transaction_id,round_id,player_id,session_id,event,amount,currency,status,settled_at,ref_transaction_id"
GOOD = "b1,r1,p1,s1,bet,10.00,EUR,SETTLED,2026-11-25T12:00:00Z,"


def write(tmp_path: Path, *lines: str, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def error_of(path: Path, **kw: object) -> str:
    with pytest.raises(SettlementError) as info:
        load_settlement(path, CurrencyTable(), **kw)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_reference_csv_loads_exact_minor_units(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER,
        GOOD,
        "w1,r1,p1,s1,win,0.5,KWD,SETTLED,2026-11-25T12:00:01Z,",
        "r1x,r1,p1,s1,refund,10,EUR,SETTLED,,b1",
    )
    table = load_settlement(path, CurrencyTable()).table
    assert table.column("amount_minor").to_pylist() == [1000, 500, 1000]
    assert table.column("line").to_pylist() == [2, 3, 4]
    assert table.column("ref_transaction_id").to_pylist() == [None, None, "b1"]
    assert table.column("settled_at").null_count == 1


def test_missing_column_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER.replace(",currency", ""), GOOD.replace(",EUR", ""))
    assert error_of(path) == f"{path}: line 1, column currency: column is missing from the header"


def test_unparseable_amount_names_its_cell(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("b1", "b2").replace("10.00", "10.0.0"))
    message = error_of(path)
    assert message.startswith(f"{path}: line 3, column 6 (amount): ")
    assert "10.0.0" in message


def test_too_many_decimals_is_an_unparseable_amount(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD.replace("10.00", "10.001"))
    assert error_of(path).startswith(f"{path}: line 2, column 6 (amount): ")


def test_unknown_currency_names_its_cell(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("b1", "b2").replace("EUR", "XXX"))
    assert error_of(path) == f"{path}: line 3, column 7 (currency): unknown currency 'XXX'"


def test_a_row_twice_names_the_second_line(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("b1", "b2"), GOOD)
    assert error_of(path) == (
        f"{path}: line 4, column 1 (transaction_id): 'b1' appears twice in the export"
    )


def test_a_row_twice_left_to_the_diff_gives_the_same_error(tmp_path: Path) -> None:
    """``rgs-shadow compare`` defers the check to the diff's hash pass over the ids."""
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("b1", "b2"), GOOD)
    deferred = load_settlement(path, CurrencyTable(), defer_id_check=True)
    scn = Scenario()
    scn.bet("b1", 1000)
    with pytest.raises(SettlementError) as info:
        diff(scn.table(), deferred, CurrencyTable())
    assert str(info.value) == error_of(path)


def test_a_deferred_check_passes_unique_ids(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("b1", "b2"))
    deferred = load_settlement(path, CurrencyTable(), defer_id_check=True)
    scn = Scenario()
    scn.bet("b1", 1000)
    assert diff(scn.table(), deferred, CurrencyTable()).coverage["unmatched_export"] == 1


def test_the_session_column_is_checked_but_not_read(tmp_path: Path) -> None:
    """Nothing compares an export's sessions: the column must exist, its cells are not parsed."""
    path = write(tmp_path, HEADER, GOOD, GOOD.replace("b1", "b2").replace("10.00,EUR", "10,JPY"))
    table = load_settlement(path, CurrencyTable()).table
    assert table.column("session_id").null_count == 2
    assert table.column("amount_minor").to_pylist() == [10_00, 10]
    no_session = write(
        tmp_path, HEADER.replace("session_id,", ""), "b1,r1,p1,bet,1.00,EUR,SETTLED,,"
    )
    assert (
        error_of(no_session)
        == f"{no_session}: line 1, column session_id: column is missing from the header"
    )


def test_unknown_status_value(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, GOOD.replace("SETTLED", "DONE"))
    assert error_of(path).startswith(f"{path}: line 2, column 8 (status): unknown value 'DONE'")


def test_parquet_export_with_integer_minor_units(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["b1", "b2"],
                "round_id": ["r1", "r1"],
                "player_id": ["p1", "p1"],
                "session_id": ["s1", "s1"],
                "event": ["bet", "bet"],
                "amount": [1000, 250],
                "currency": ["EUR", "JPY"],
                "status": ["SETTLED", "DECLINED"],
                "settled_at": ["2026-11-25T12:00:00Z", "2026-11-25T12:00:01Z"],
                "ref_transaction_id": [None, None],
            }
        ),
        path,
    )
    table = load_settlement(path, CurrencyTable()).table
    assert table.column("amount_minor").to_pylist() == [1000, 250]


def test_parquet_export_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "export.parquet"
    pq.write_table(
        pa.table(
            {
                "transaction_id": ["b1", "b1"],
                "round_id": ["r1", "r1"],
                "player_id": ["p1", "p1"],
                "session_id": ["s1", "s1"],
                "event": ["bet", "bet"],
                "amount": ["1.00", "2.00"],
                "currency": ["EUR", "EUR"],
                "status": ["SETTLED", "SETTLED"],
                "settled_at": [None, None],
                "ref_transaction_id": [None, None],
            }
        ),
        path,
    )
    assert "line 2, column 1 (transaction_id)" in error_of(path)


def test_column_map_for_a_hub88_like_layout(tmp_path: Path) -> None:
    cmap = parse_column_map(
        {
            "amount_units": "integer",
            "amount_scale": 5,
            "timestamp": "epoch_ms",
            "columns": {
                "transaction_id": "transaction_uuid",
                "round_id": "round",
                "player_id": "user",
                "session_id": "",
                "event": "kind",
                "settled_at": "created_at",
                "ref_transaction_id": "reference_transaction_uuid",
            },
            "status_values": {
                "SETTLED": ["TS_SUCCESS"],
                "DECLINED": ["TS_DECLINED"],
                "CANCELLED": ["TS_ROLLED_BACK"],
            },
            "event_values": {"bet": "debit", "win": "credit", "refund": "rollback"},
        }
    )
    path = write(
        tmp_path,
        "transaction_uuid,round,user,kind,amount,currency,status,created_at,"
        "reference_transaction_uuid",
        "t1,r1,u1,debit,356000,EUR,TS_SUCCESS,1764072000000,",
        "t2,r1,u1,rollback,356000,EUR,TS_SUCCESS,1764072001000,t1",
    )
    table = load_settlement(path, CurrencyTable(), cmap).table
    assert table.column("amount_minor").to_pylist() == [356, 356]
    assert table.column("event").to_pylist() == ["bet", "refund"]
    assert table.column("session_id").null_count == 2
    inexact = write(
        tmp_path,
        "transaction_uuid,round,user,kind,amount,currency,status,created_at,"
        "reference_transaction_uuid",
        "t1,r1,u1,debit,356001,EUR,TS_SUCCESS,1,",
    )
    assert "line 2, column 5 (amount)" in error_of(inexact, cmap=cmap)


def test_unknown_column_map_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"settlement\.columns\.amout: unknown key"):
        parse_column_map({"columns": {"amout": "x"}})
    with pytest.raises(ConfigError, match=r"settlement\.colums: unknown key"):
        parse_column_map({"colums": {}})


PRAGMATIC = {
    "layout": "rounds",
    "skip_lines": 1,
    "columns": {
        "round_id": "playSessionID",
        "player_id": "extPlayerID",
        "session_id": "",
        "settled_at": "endDate",
    },
    "status_values": {"SETTLED": ["C"]},
    "skip_status_values": ["I"],
}


def test_per_round_feed_maps_to_bet_and_win_rows_and_diffs_by_round(tmp_path: Path) -> None:
    scn = Scenario()
    scn.callback("bet", "b1", 10_00, round_id="R1")
    scn.callback("win", "w1", 25_00, round_id="R1")
    scn.callback("bet", "b2", 5_00, round_id="R2")
    scn.callback("bet", "b3", 5_00, round_id="R2")
    scn.callback("refund", "x3", 5_00, round_id="R2", ref="b3")
    scn.callback("bet", "b4", 2_00, round_id="R3")
    path = write(
        tmp_path,
        "timepoint=1764072000000",
        "playerID,extPlayerID,gameID,playSessionID,parentSessionID,startDate,endDate,status,"
        "type,bet,win,currency,jackpot",
        "1,p1,vs20,R1,,2026-11-25 12:00:00,2026-11-25 12:00:02,C,R,10.00,25.00,EUR,0",
        "1,p1,vs20,R2,,2026-11-25 12:00:03,2026-11-25 12:00:05,C,R,5.00,0.00,EUR,0",
        "1,p1,vs20,R3,,2026-11-25 12:00:06,2026-11-25 12:00:06,C,R,3.00,0.00,EUR,0",
        "1,p1,vs20,R4,,2026-11-25 12:00:06,,I,R,1.00,0.00,EUR,0",
    )
    settlement = load_settlement(path, CurrencyTable(), parse_column_map(PRAGMATIC))
    assert settlement.granularity == "round"
    assert settlement.table.num_rows == 6  # R4 is in progress and skipped
    result = diff(scn.table(), settlement, CurrencyTable())
    assert [
        (d.kind.value, d.transaction_id, d.amount_at_risk_minor) for d in result.divergences
    ] == [("AMOUNT_MISMATCH", "R3:bet", 1_00)]
    assert result.divergences[0].export_says == "SETTLED bet 3.00 EUR (line 5)"


def _times(path: Path) -> list[int | None]:
    column = load_settlement(path, CurrencyTable()).table.column("settled_at")
    return column.cast(pa.int64()).to_pylist()


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["2026-11-25T12:00:00Z", "2026-11-25 13:00:00.5+01:00", '""'], [0, 500_000, None]),
        (["2026-11-25T12:00:00", "2026-11-25 12:00:01"], [0, 1_000_000]),  # local time is UTC
    ],
)
def test_times_with_or_without_offsets(
    tmp_path: Path, cells: list[str], expected: list[int | None]
) -> None:
    rows = [f"b{i},r1,p1,s1,bet,1.00,EUR,SETTLED,{cell}," for i, cell in enumerate(cells)]
    noon = 1_795_608_000_000_000  # 2026-11-25T12:00:00Z
    got = _times(write(tmp_path, HEADER, *rows))
    assert got == [None if e is None else noon + e for e in expected]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (["2026-11-25T12:00:00Z", "2026-11-25T12:00:00"], "line 3, column 9 (settled_at)"),
        (["2026-11-25T12:00:00Z", "yesterday"], "timestamp 'yesterday' is not RFC 3339"),
    ],
)
def test_bad_times_name_the_problem(tmp_path: Path, cells: list[str], message: str) -> None:
    rows = [f"b{i},r1,p1,s1,bet,1.00,EUR,SETTLED,{cell}," for i, cell in enumerate(cells)]
    assert message in error_of(write(tmp_path, HEADER, *rows))


@pytest.mark.parametrize("quote", ["", '"'])
def test_columns_the_map_does_not_use_are_not_parsed_quoted_header_or_not(
    tmp_path: Path, quote: str
) -> None:
    """A vendor column nothing reads cannot break the load (here: Latin-1 bytes in it),
    whether the header quotes its names, as writers that quote every field do, or not."""
    names = [*HEADER.split(","), "note"]
    header = ",".join(f"{quote}{n}{quote}" for n in names).encode()
    row = (",".join(f'"{c}"' if c else "" for c in GOOD.split(",")) + ",").encode() + b"caf\xe9"
    path = tmp_path / "export.csv"
    path.write_bytes(header + b"\n" + row + b"\n")
    table = load_settlement(path, CurrencyTable()).table
    assert table.column("transaction_id").to_pylist() == ["b1"]
    assert table.column("amount_minor").to_pylist() == [10_00]
    assert table.column("settled_at").null_count == 0


def test_a_quoted_name_holding_the_delimiter_is_still_found(tmp_path: Path) -> None:
    """Such a header cannot be split on commas: the whole file is read as it is."""
    path = write(tmp_path, HEADER + ',"a,b"', GOOD + ",x")
    assert load_settlement(path, CurrencyTable()).table.column("amount_minor").to_pylist() == [
        10_00
    ]
