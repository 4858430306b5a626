"""The whole chain on real processes (issue: simulator, sample traffic, demo).

simulated aggregator -> ``rgs-shadow capture`` -> a wallet -> Parquet -> replay ->
compare -> report.  With the deliberately faulty wallet the diff must find exactly
the divergences that were planted (export discrepancies and wallet bugs), and
nothing on clean transactions; with ``rgs-shadow serve --mode shadow`` behind the
proxy the aggregator sees mock answers only and the server's own decisions equal
an offline replay's.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from shadow.dataset import read_captures
from shadow.simulator.sample import make_sample, sample_env
from tests._server import cli

pytestmark = pytest.mark.slow


def _run(*args: str) -> tuple[int, str, str]:
    done = cli(*args, env=sample_env(), timeout=600)
    return done.returncode, done.stdout, done.stderr


def test_faulty_wallet_chain_finds_exactly_the_planted_divergences(tmp_path: Path) -> None:
    out = tmp_path / "sample"
    result = make_sample(out, seed=3, players=9, rounds=40, work=tmp_path / "work")
    expected = {(e["kind"], e["transaction_id"]) for e in result["expected"]}  # type: ignore[union-attr]
    kinds = {k for k, _ in expected}
    assert kinds == {
        "MISSING_IN_WALLET",
        "MISSING_IN_EXPORT",
        "AMOUNT_MISMATCH",
        "CURRENCY_MISMATCH",
        "STATUS_MISMATCH",
        "DOUBLE_APPLIED",
        "LIVE_RESPONSE_MISMATCH",
        "SLOW_RESPONSE",
    }
    config = str(out / "config.toml")
    code, _, err = _run(
        "replay",
        str(out / "capture"),
        "--out",
        str(tmp_path / "d.parquet"),
        "--config",
        config,
        "--quiet",
    )
    assert code == 0, err
    code, stdout, err = _run(
        "compare",
        str(tmp_path / "d.parquet"),
        "--settlement",
        str(out / "settlement.csv"),
        "--out",
        str(tmp_path / "div"),
        "--config",
        config,
        "--json",
    )
    assert code == 1, err
    found = {(d["kind"], d["transaction_id"]) for d in json.loads(stdout)}
    assert found == expected
    code, report, err = _run(
        "report", str(tmp_path / "div"), "--html", str(tmp_path / "report.html")
    )
    assert code == 1, err
    assert "money at risk" in report.lower()
    page = (tmp_path / "report.html").read_text()
    for _, txid in expected:
        assert txid in page


def _server_decisions(db: str) -> list[tuple[bytes, str, str]]:
    """(request body, outcome, code) of every callback the shadow server decided, in order."""
    path = db.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT request, decision FROM audit WHERE kind = 'callback' ORDER BY seq"
        ).fetchall()
    out = []
    for body, decision in rows:
        doc = json.loads(decision)
        out.append((bytes(body), doc["outcome"], doc["code"]))
    return out


def test_shadow_server_behind_the_proxy_answers_mocks_and_matches_offline_replay(
    tmp_path: Path,
) -> None:
    out = tmp_path / "sample"
    result = make_sample(out, seed=5, players=8, rounds=30, wallet="shadow", work=tmp_path / "work")
    captured = read_captures(out / "capture").to_pylist()
    assert captured
    answered = [r for r in captured if r["response_status"] is not None]
    assert all(r["response_status"] == 200 for r in answered)
    assert all(json.loads(r["response_body"])["status"] == "OK" for r in answered)

    code, _, err = _run(
        "replay",
        str(out / "capture"),
        "--out",
        str(tmp_path / "d.parquet"),
        "--config",
        str(out / "config.toml"),
        "--quiet",
    )
    assert code == 0, err
    offline = pq.read_table(tmp_path / "d.parquet").to_pylist()
    by_capture = {r["capture_id"]: r for r in captured}
    replayed = [
        (by_capture[r["capture_id"]]["request_body"], r["outcome"], r["code"]) for r in offline
    ]
    server = _server_decisions(str(result["wallet_db"]))
    assert {code for _, _, code in server} > {"OK"}, "some shadow decisions must be refusals"
    assert sorted(replayed) == sorted(server)
