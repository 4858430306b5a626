"""Replay of a real capture decides what ``serve --mode live`` answered (must show 1).

Real processes: ``rgs-shadow serve --mode live`` on SQLite, ``rgs-shadow capture``
in front of it, httpx as the aggregator (bets, wins, retries of identical bytes,
a bet beyond the balance, a refund before its bet, a changed retry, a bad
signature).  Then ``rgs-shadow replay`` on what was captured: every callback's
decision must equal the live answer, code and HTTP status, and the balances of
fresh (non-repeat) answers must agree.
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests._server import Server, cli
from tests.shadow.test_cli_capture import CaptureProcess, free_port
from wallet_core.testing import CallbackFactory

pytestmark = pytest.mark.slow

PLAYERS = {"p1": ("EUR", "50.00"), "p2": ("JPY", "500"), "p3": ("BTC", "0.01000000")}
STAKE = {"EUR": "7.50", "JPY": "120", "BTC": "0.00300000"}


def _traffic(rng: random.Random) -> list[tuple[dict[str, str], bytes]]:
    calls: list[tuple[dict[str, str], bytes]] = []
    factory = CallbackFactory()
    bets: list[dict[str, str]] = []
    for i in range(120):
        player = rng.choice(sorted(PLAYERS))
        currency = PLAYERS[player][0]
        base = {"session_id": f"s-{player}", "player_id": player, "currency": currency}
        roll = rng.random()
        if roll < 0.45:
            bet = {
                **base,
                "transaction_id": f"b{i}",
                "amount": STAKE[currency],
                "round_id": f"{player}-r{i // 6}",
            }
            bets.append(bet)
            calls.append(factory.make("bet", **bet))
        elif roll < 0.70:
            calls.append(
                factory.make(
                    "win",
                    **base,
                    transaction_id=f"w{i}",
                    amount=STAKE[currency],
                    round_id=f"{player}-r{i // 6}",
                )
            )
        elif roll < 0.80 and calls:
            calls.append(rng.choice(calls))  # a retry of identical bytes
        elif roll < 0.86 and bets:
            bet = rng.choice(bets)
            calls.append(
                factory.make(
                    "refund",
                    **{k: bet[k] for k in base},
                    transaction_id=f"f{i}",
                    amount=bet["amount"],
                    round_id=bet["round_id"],
                    ref_transaction_id=bet["transaction_id"],
                )
            )
        elif roll < 0.90:
            calls.append(
                factory.make(
                    "settle", **base, transaction_id=f"e{i}", round_id=f"{player}-r{i // 6}"
                )
            )
        else:
            calls.append(factory.make("balance", **base))
    p1 = {"session_id": "s-p1", "player_id": "p1", "currency": "EUR"}
    calls += [
        factory.make("bet", **p1, transaction_id="huge", amount="99999.00", round_id="x"),
        factory.make(
            "refund",
            **p1,
            transaction_id="early-refund",
            amount="1.00",
            round_id="y",
            ref_transaction_id="late-bet",
        ),
        factory.make("bet", **p1, transaction_id="late-bet", amount="1.00", round_id="y"),
        factory.make("bet", **p1, transaction_id="huge", amount="99998.00", round_id="x"),
    ]
    headers, body = factory.make("bet", **p1, transaction_id="forged", amount="1.00", round_id="z")
    calls.append(({**headers, "x-rgs-signature": "sha256=" + "0" * 64}, body))
    return calls


def test_replay_of_a_real_capture_matches_the_live_server(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'live.db'}"
    with_port = free_port()
    server = Server(db, "live").start()
    capture = None
    try:
        for player, (currency, opening) in PLAYERS.items():
            assert (
                server.admin(
                    "POST",
                    "/admin/sessions",
                    json={
                        "session_id": f"s-{player}",
                        "player_id": player,
                        "currency": currency,
                        "aggregator": "default",
                    },
                ).status_code
                == 201
            )
            assert (
                server.admin(
                    "POST",
                    "/admin/adjustments",
                    json={
                        "reference": f"open-{player}",
                        "player_id": player,
                        "currency": currency,
                        "amount": opening,
                    },
                ).status_code
                == 200
            )
        capture = CaptureProcess(with_port, server.url, tmp_path / "capture")
        answers = []
        with httpx.Client(timeout=10) as client:
            for headers, body in _traffic(random.Random(11)):
                response = client.post(capture.url("default"), content=body, headers=headers)
                answers.append(response.status_code)
        code, err = capture.terminate()
        assert code == 0, err
    finally:
        if capture is not None:
            capture.kill()
        server.stop()
    assert {402, 409, 401} <= set(answers)

    done = cli("replay", str(tmp_path / "capture"), "--out", str(tmp_path / "d.parquet"), "--quiet")
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "d.parquet").to_pylist()
    assert len(rows) == len(answers)
    for row in rows:
        assert (row["code"], row["http_status"]) == (row["live_code"], row["live_status"]), row
        if row["outcome"] != "REPEAT" and row["live_balance_minor"] is not None:
            assert row["balance_after_minor"] == row["live_balance_minor"], row
    codes = {r["code"] for r in rows}
    assert {
        "OK",
        "INSUFFICIENT_FUNDS",
        "ALREADY_REFUNDED",
        "DUPLICATE_MISMATCH",
        "INVALID_SIGNATURE",
    } <= codes
