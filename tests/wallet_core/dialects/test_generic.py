from __future__ import annotations

import json

import pytest

from wallet_core.codes import Code
from wallet_core.dialects import GenericDialect, ParseError, get_dialect
from wallet_core.model import Decision, Event, Outcome
from wallet_core.money import CurrencyTable

D = GenericDialect()
CUR = CurrencyTable()


def doc(**fields: object) -> bytes:
    base = {
        "event": "bet",
        "session_id": "s",
        "player_id": "p",
        "currency": "EUR",
        "timestamp": "2026-11-25T12:00:00Z",
        "transaction_id": "t",
        "amount": "1.50",
        "round_id": "r",
    }
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


def test_signature_round_trip_and_constant_time_compare() -> None:
    body = doc()
    headers = D.sign(body, b"k")
    assert D.verify(headers, body, b"k")
    assert not D.verify(headers, body + b" ", b"k")
    assert not D.verify(headers, body, b"other")
    assert not D.verify({}, body, b"k")
    assert not D.verify({"x-rgs-signature": headers["x-rgs-signature"][7:]}, body, b"k")


def test_parses_each_event() -> None:
    bet = D.parse(doc(), CUR)
    assert (bet.event, bet.amount_minor, bet.transaction_id) == (Event.BET, 150, "t")
    win = D.parse(doc(event="win", amount="0"), CUR)
    assert win.amount_minor == 0
    refund = D.parse(doc(event="refund", ref_transaction_id="t0"), CUR)
    assert refund.ref_transaction_id == "t0"
    settle = D.parse(doc(event="settle", amount=None, total_bet="3.00", total_win="1"), CUR)
    assert (settle.total_bet_minor, settle.total_win_minor) == (300, 100)
    balance = D.parse(doc(event="balance", transaction_id=None, round_id=None, amount=None), CUR)
    assert balance.transaction_id is None


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"event": "refund"}, "ref_transaction_id"),
        ({"amount": None}, "amount"),
        ({"round_id": None}, "round_id"),
        ({"amount": "0"}, "greater than zero"),
        ({"currency": "JPY", "amount": "1.5"}, "decimals"),
        ({"timestamp": "2026-11-25 12:00"}, "timestamp"),
        ({"timestamp": "2026-11-25T12:00:00+02:00"}, "timestamp"),
    ],
)
def test_parse_errors_name_the_field(fields: dict[str, object], fragment: str) -> None:
    with pytest.raises(ParseError, match=fragment):
        D.parse(doc(**fields), CUR)


def test_nan_and_floats_never_become_money() -> None:
    with pytest.raises(ParseError):
        D.parse(b'{"event": "bet", "amount": NaN}', CUR)
    with pytest.raises(ParseError, match="string"):
        D.parse(doc(amount=1.5), CUR)


def test_identify_never_raises() -> None:
    assert D.identify(doc()) == ("t", "bet")
    assert D.identify(b"\xff") == (None, None)
    assert D.identify(b"[]") == (None, None)
    assert D.identify(b'{"transaction_id": 5, "event": "win"}') == (None, "win")


def test_render_success_error_and_mock() -> None:
    ok = Decision(
        Outcome.APPLIED, Code.OK, 200, transaction_id="t", currency="JPY", balance_after=1200
    )
    assert json.loads(D.render(ok, CUR).body) == {
        "status": "OK",
        "balance": "1200",
        "currency": "JPY",
        "transaction_id": "t",
    }
    err = Decision(
        Outcome.REJECTED,
        Code.INSUFFICIENT_FUNDS,
        402,
        currency="BTC",
        balance_after=1,
        message="no",
    )
    rendered = D.render(err, CUR)
    assert rendered.status == 402
    assert json.loads(rendered.body) == {
        "status": "ERROR",
        "code": "INSUFFICIENT_FUNDS",
        "message": "no",
        "balance": "0.00000001",
    }
    mock = D.render_mock(err, CUR)
    assert mock.status == 200 and json.loads(mock.body)["status"] == "OK"


def test_read_answer_of_live_responses() -> None:
    ok = D.read_answer(200, b'{"status":"OK","balance":"9.50","currency":"EUR"}', "EUR", CUR)
    assert (ok.accepted, ok.code, ok.balance_minor) == (True, "OK", 950)
    err = D.read_answer(
        402, b'{"status":"ERROR","code":"INSUFFICIENT_FUNDS","balance":"1"}', "EUR", CUR
    )
    assert (err.accepted, err.code, err.balance_minor) == (False, "INSUFFICIENT_FUNDS", 100)
    assert D.read_answer(502, b"<html>", "EUR", CUR).code == "HTTP_502"
    assert D.read_answer(None, None, "EUR", CUR).accepted is None


def test_unknown_dialect_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="generic"):
        get_dialect("hub88")
