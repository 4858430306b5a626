from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wallet_core.money import (
    DEFAULT_CURRENCIES,
    INT64_MAX,
    CurrencyTable,
    MoneyError,
    format_amount,
    parse_amount,
)


@pytest.mark.parametrize(
    ("text", "exponent", "minor"),
    [
        ("10.00", 2, 1000),
        ("10", 2, 1000),
        ("10.5", 2, 1050),
        ("0.01", 2, 1),
        ("7", 0, 7),
        ("1.234", 3, 1234),
        ("0.00000001", 8, 1),
        ("21000000.00000000", 8, 2_100_000_000_000_000),
        ("1.000001", 6, 1_000_001),
        ("0", 2, 0),
    ],
)
def test_parses_exactly(text: str, exponent: int, minor: int) -> None:
    assert parse_amount(text, exponent) == minor


@pytest.mark.parametrize(
    "text",
    [
        "10.001",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "+1.00",
        "01.00",
        " 1.00",
        "1.00 ",
        "1,00",
        ".5",
        "5.",
        "",
        "-",
        "0x10",
        "１.00",
        "92233720368547758.08",
        "99999999999999999999999",
    ],
)
def test_refuses_what_cannot_be_exact(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_amount(text, 2)


@pytest.mark.parametrize("value", [10, 10.0, None, b"10.00", ["10"]])
def test_refuses_non_strings(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_amount(value, 2)


def test_int64_edge() -> None:
    assert parse_amount("92233720368547758.07", 2) == INT64_MAX
    with pytest.raises(MoneyError):
        parse_amount("92233720368547758.08", 2)


def test_sign_rules() -> None:
    with pytest.raises(MoneyError):
        parse_amount("-1.00", 2)
    assert parse_amount("-1.00", 2, allow_negative=True) == -100
    with pytest.raises(MoneyError):
        parse_amount("0.00", 2, allow_zero=False)


@given(
    minor=st.integers(-INT64_MAX, INT64_MAX),
    exponent=st.sampled_from(sorted(set(DEFAULT_CURRENCIES.values()))),
)
def test_round_trip_every_scale(minor: int, exponent: int) -> None:
    text = format_amount(minor, exponent)
    assert parse_amount(text, exponent, allow_negative=True) == minor


def test_format_pads() -> None:
    assert format_amount(5, 2) == "0.05"
    assert format_amount(-5, 3) == "-0.005"
    assert format_amount(1234, 0) == "1234"


def test_currency_table_defaults_and_extension() -> None:
    table = CurrencyTable({"ETH6": 6})
    assert table.exponent("JPY") == 0 and table.exponent("KWD") == 3
    assert table.exponent("BTC") == 8 and table.exponent("USDT") == 6
    assert table.exponent("ETH6") == 6
    with pytest.raises(MoneyError):
        table.exponent("XXX")
    for bad in ({"eur": 2}, {"ABC": -1}, {"ABC": 2.0}, {"ABC": True}):
        with pytest.raises(MoneyError):
            CurrencyTable(bad)  # type: ignore[arg-type]


def test_a_currency_table_survives_pickling() -> None:
    """Replay's worker processes receive the configuration pickled (replay.parallel)."""
    table = CurrencyTable({"XTS": 4})
    again = pickle.loads(pickle.dumps(table))
    assert again.codes() == table.codes() and again.exponent("XTS") == 4
    with pytest.raises(MoneyError):
        again.exponent("NOPE")
