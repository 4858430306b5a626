"""The compare, reconcile, promote and demote commands: files, exit codes, one-line errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from compare.divergence import DIVERGENCE_SCHEMA
from compare.testing import Scenario
from shadow.cli import app
from tests._server import Server, cli
from wallet_core.audit import verify_chain
from wallet_core.config import WalletConfig
from wallet_core.engine import WalletCore
from wallet_core.model import Mode
from wallet_core.store import open_store
from wallet_core.testing import CallbackFactory

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def files(tmp_path: Path, scn: Scenario) -> tuple[Path, Path]:
    return scn.write(tmp_path / "in", capture_dir=tmp_path / "captures")


def test_compare_clean_pair_exits_0_and_writes_the_three_files(tmp_path: Path) -> None:
    scn = Scenario()
    scn.clean_day()
    decisions, export = files(tmp_path, scn)
    out = tmp_path / "div"
    result = invoke(
        "compare", str(decisions), "--settlement", str(export), "--out", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert pq.read_schema(out / "divergences.parquet").names == DIVERGENCE_SCHEMA.names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["money_at_risk"] is False and summary["by_kind"] == []
    assert summary["currencies"] == {"EUR": 2}
    assert summary["capture_dir"] == str((tmp_path / "captures").resolve())
    assert summary["coverage"]["decided"] == len(scn.decisions)
    assert summary["time_range"]["first"] == "2026-11-25T12:00:01.000000Z"
    assert summary["latency_ms"]["histogram"][-1] == {"le_ms": None, "count": 12}


def test_compare_with_money_at_risk_exits_1_and_sorts_the_files(tmp_path: Path) -> None:
    scn = Scenario()
    scn.clean_day()
    scn.bet("b-ref", 10_00, round_id="r9", code="INSUFFICIENT_FUNDS", latency_ms=5000.0)
    first = scn.bet("b-dbl", 3_00, round_id="r9")
    scn.retry(first, moves=True)
    decisions, export = files(tmp_path, scn)
    out = tmp_path / "div"
    result = invoke(
        "compare", str(decisions), "--settlement", str(export), "--out", str(out), "--json"
    )
    assert result.exit_code == 1, result.output
    printed = json.loads(result.stdout)
    assert [d["kind"] for d in printed] == ["STATUS_MISMATCH", "DOUBLE_APPLIED", "SLOW_RESPONSE"]
    assert printed == json.loads((out / "divergences.json").read_text())
    assert printed[0]["at"].endswith("Z") and isinstance(printed[0]["capture_ids"], list)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total_at_risk_minor"] == {"EUR": 13_00}
    assert {
        "kind": "DOUBLE_APPLIED",
        "currency": "EUR",
        "count": 1,
        "amount_at_risk_minor": 3_00,
    } in summary["by_kind"]
    kinds = pq.read_table(out / "divergences.parquet").column("kind").to_pylist()
    assert kinds == ["STATUS_MISMATCH", "DOUBLE_APPLIED", "SLOW_RESPONSE"]


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("b1,r1,p1,s1,bet,ten,EUR,SETTLED,,", "line 3, column 6 (amount)"),
        ("b1,r1,p1,s1,bet,1.00,XYZ,SETTLED,,", "line 3, column 7 (currency)"),
        ("b0,r0,p1,s1,bet,10.00,EUR,SETTLED,,", "line 3, column 1 (transaction_id)"),
    ],
)
def test_bad_export_is_one_line_exit_2(tmp_path: Path, line: str, expect: str) -> None:
    scn = Scenario()
    scn.clean_day()
    decisions, export = files(tmp_path, scn)
    lines = export.read_text().splitlines()
    export.write_text("\n".join([lines[0], lines[1], line, *lines[2:]]) + "\n")
    result = invoke(
        "compare", str(decisions), "--settlement", str(export), "--out", str(tmp_path / "div")
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"rgs-shadow: {export}: {expect}")


def test_export_missing_a_column_is_one_line_exit_2(tmp_path: Path) -> None:
    scn = Scenario()
    scn.clean_day()
    decisions, export = files(tmp_path, scn)
    export.write_text(
        "\n".join(",".join(line.split(",")[:-1]) for line in export.read_text().splitlines()) + "\n"
    )
    result = invoke(
        "compare", str(decisions), "--settlement", str(export), "--out", str(tmp_path / "div")
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"rgs-shadow: {export}: line 1, column ref_transaction_id: "
        "column is missing from the header\n"
    )


def test_unknown_compare_config_key_is_exit_2(tmp_path: Path) -> None:
    scn = Scenario()
    scn.clean_day()
    decisions, export = files(tmp_path, scn)
    config = tmp_path / "c.toml"
    config.write_text('[aggregators.acme]\nsecret_env = "X"\n[compare]\nslow_ms = 5\n')
    result = invoke(
        "compare",
        str(decisions),
        "--settlement",
        str(export),
        "--out",
        str(tmp_path / "div"),
        "--config",
        str(config),
    )
    assert result.exit_code == 2
    assert result.stderr == "rgs-shadow: compare.slow_ms: unknown key\n"


# -- reconcile ------------------------------------------------------------------------------
class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alert"
    server.shutdown()
    server.server_close()


def _live_store(tmp_path: Path) -> str:
    """A live SQLite store with a bet, a win and a refunded bet decided by the engine."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = open_store(url)
    with store.transaction() as tx:  # an opening balance (a cashier deposit)
        tx.move("p1", "EUR", 100_00)
    core = WalletCore(store, WalletConfig.single("acme"), mode=Mode.SHADOW)
    f = CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})
    t0 = 1_764_072_000_000_000  # 2025-11-25T12:00:00Z
    calls = [
        ("bet", {"transaction_id": "b1", "round_id": "r1", "amount": "10.00"}),
        ("win", {"transaction_id": "w1", "round_id": "r1", "amount": "4.00"}),
        ("bet", {"transaction_id": "b2", "round_id": "r2", "amount": "3.00"}),
        (
            "refund",
            {
                "transaction_id": "x2",
                "round_id": "r2",
                "amount": "3.00",
                "ref_transaction_id": "b2",
            },
        ),
    ]
    for i, (event, fields) in enumerate(calls):
        headers, body = f.make(event, **fields)
        core.handle("acme", {k.lower(): v for k, v in headers.items()}, body, t0 + i * 1_000_000)
    store.close()
    return url


EXPORT_ROWS = [
    "b1,r1,p1,s1,bet,10.00,EUR,SETTLED,2025-11-25T12:00:00Z,",
    "w1,r1,p1,s1,win,4.00,EUR,SETTLED,2025-11-25T12:00:01Z,",
    "b2,r2,p1,s1,bet,3.00,EUR,CANCELLED,2025-11-25T12:00:02Z,",
    "x2,r2,p1,s1,refund,3.00,EUR,SETTLED,2025-11-25T12:00:03Z,b2",
]
HEADER = (
    "transaction_id,round_id,player_id,session_id,event,amount,currency,status,"
    "settled_at,ref_transaction_id"
)


def test_reconcile_matching_ledger_exits_0_and_posts_nothing(tmp_path: Path, webhook: str) -> None:
    url = _live_store(tmp_path)
    export = tmp_path / "export.csv"
    export.write_text("\n".join([HEADER, *EXPORT_ROWS]) + "\n")
    result = invoke(
        "reconcile",
        "--db",
        url,
        "--settlement",
        str(export),
        "--since",
        "2025-11-25T11:00:00Z",
        "--until",
        "2025-11-25T13:00:00Z",
        "--alert-webhook",
        webhook,
        "--out",
        str(tmp_path / "rec"),
    )
    assert result.exit_code == 0, result.output
    assert _Hook.received == []
    assert json.loads((tmp_path / "rec" / "summary.json").read_text())["coverage"]["matched"] == 4


def test_reconcile_with_money_at_risk_exits_1_and_posts_the_summary(
    tmp_path: Path, webhook: str
) -> None:
    url = _live_store(tmp_path)
    export = tmp_path / "export.csv"
    rows = [*EXPORT_ROWS, "w9,r1,p1,s1,win,50.00,EUR,SETTLED,2025-11-25T12:00:01Z,"]
    export.write_text("\n".join([HEADER, *rows]) + "\n")
    result = invoke(
        "reconcile",
        "--db",
        url,
        "--settlement",
        str(export),
        "--since",
        "2025-11-25T11:00:00Z",
        "--until",
        "2025-11-25T13:00:00Z",
        "--alert-webhook",
        webhook,
    )
    assert result.exit_code == 1, result.output
    (posted,) = _Hook.received
    assert posted["money_at_risk"] is True
    assert posted["total_at_risk_minor"] == {"EUR": 50_00}
    assert posted["by_kind"][0]["kind"] == "MISSING_IN_WALLET"


# -- promote / demote -----------------------------------------------------------------------
def _evidence(tmp_path: Path, scn: Scenario) -> Path:
    decisions, export = files(tmp_path, scn)
    out = tmp_path / "evidence"
    invoke("compare", str(decisions), "--settlement", str(export), "--out", str(out))
    return out


def test_promote_refuses_short_evidence_then_forced_with_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    open_store(url).close()
    scn = Scenario()
    scn.clean_day()
    evidence = _evidence(tmp_path, scn)
    result = invoke("promote", "--db", url, "--evidence", str(evidence))
    assert result.exit_code == 1
    assert "covers 0.00 days" in result.stderr and result.stderr.count("\n") == 1
    assert invoke("promote", "--db", url, "--evidence", str(evidence), "--force").exit_code == 2
    result = invoke(
        "promote", "--db", url, "--evidence", str(evidence), "--force", "--reason", "pilot operator"
    )
    assert result.exit_code == 0, result.output
    store = open_store(url)
    assert store.get_mode() == "live"
    rows = list(store.audit_rows())
    assert verify_chain(rows)[1] is None
    decision = json.loads(rows[-1].entry.decision)
    assert rows[-1].entry.kind == "mode_change" and decision["reason"] == "pilot operator"
    assert decision["forced"] is True and len(decision["evidence"]["sha256"]) == 3
    store.close()


def test_promote_refuses_money_at_risk_and_accepts_clean_long_evidence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    open_store(url).close()
    bad = Scenario(step=timedelta(days=1))
    bad.clean_day(rounds=4)
    bad.bet("b-ref", 10_00, round_id="r9", code="INSUFFICIENT_FUNDS")
    bad.clean_day(tag="x")
    evidence = _evidence(tmp_path / "bad", bad)
    result = invoke("promote", "--db", url, "--evidence", str(evidence), "--min-callbacks", "5")
    assert result.exit_code == 1 and "money at risk" in result.stderr
    good = Scenario(step=timedelta(days=1))
    good.clean_day(rounds=4)
    evidence = _evidence(tmp_path / "good", good)
    result = invoke("promote", "--db", url, "--evidence", str(evidence), "--min-callbacks", "5")
    assert result.exit_code == 0, result.output
    assert invoke("demote", "--db", url, "--reason", "rollback drill").exit_code == 0
    store = open_store(url)
    assert store.get_mode() == "shadow"
    assert [r.entry.kind for r in store.audit_rows()][-2:] == ["mode_change", "mode_change"]
    assert verify_chain(store.audit_rows())[1] is None
    store.close()


def test_promote_is_visible_in_audit_verify_and_in_healthz_of_a_running_server(
    tmp_path: Path,
) -> None:
    """Must-show 4: a promote made while the wallet serves in shadow shows in both places."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    good = Scenario(step=timedelta(days=1))
    good.clean_day(rounds=4)
    evidence = _evidence(tmp_path, good)
    with Server(url, "shadow") as server:
        before = httpx.get(server.url + "/healthz", timeout=10).json()
        assert before["mode"] == "shadow" and before["serving_mode"] == "shadow"
        promoted = cli("promote", "--db", url, "--evidence", str(evidence), "--min-callbacks", "5")
        assert promoted.returncode == 0, promoted.stderr
        assert "wallet is live" in promoted.stdout
        # /healthz reads the mode the store records on every call: the switch shows at once,
        # beside the mode this process was started to serve in.
        health = httpx.get(server.url + "/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json()["mode"] == "live" and health.json()["serving_mode"] == "shadow"
    verified = cli("audit", "verify", "--db", url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain intact" in verified.stdout
    store = open_store(url)
    try:
        (row,) = [r for r in store.audit_rows() if r.entry.kind == "mode_change"]
        decision = json.loads(row.entry.decision)
        assert decision["from"] == "shadow" and decision["to"] == "live"
        assert decision["forced"] is False and len(decision["evidence"]["sha256"]) == 3
        assert store.get_mode() == "live"
    finally:
        store.close()
