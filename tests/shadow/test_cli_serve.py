"""``rgs-shadow serve`` as a command: bad usage is one line and exit 2, the mode is stored and
shown, an outdated store is refused, and SIGTERM finishes the request in flight."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx
import pytest

from shadow.cli_serve import _bind, parse_listen
from tests._server import Server, cli, snapshot_file
from wallet_core.errors import InputError
from wallet_core.store import open_store
from wallet_core.testing import CallbackFactory


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"--listen": "nope"}, {}, "--listen"),
        ({"--listen": "127.0.0.1:99999"}, {}, "--listen"),
        ({"--mode": "dry"}, {}, "--mode"),
        ({}, {"RGS_SHADOW_SECRET": ""}, "RGS_SHADOW_SECRET"),
        ({"--config": "/nonexistent.toml"}, {}, "does not exist"),
        ({"--snapshot": "/nonexistent.csv"}, {}, "snapshot"),
        ({"--db": "mysql://x"}, {}, "--db"),
        ({"--db": "postgresql://nobody@127.0.0.1:1/x"}, {}, "cannot connect"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    tmp_path: Path, flags: dict[str, str], env: dict[str, str], message: str
) -> None:
    argv = {"--listen": "127.0.0.1:0", "--mode": "live", "--db": f"sqlite:///{tmp_path}/w.db"}
    argv.update(flags)
    result = cli("serve", *(part for pair in argv.items() for part in pair), env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli(
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--mode",
            "live",
            "--db",
            f"sqlite:///{tmp_path}/w.db",
        )
    assert result.returncode == 2 and "cannot listen" in result.stderr


def test_the_listening_socket_says_tcp_so_asyncio_sets_nodelay() -> None:
    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    with pytest.raises(InputError):
        parse_listen(":80")


def test_the_mode_is_recorded_in_the_store_and_shown(store_url: str, tmp_path: Path) -> None:
    snapshot = snapshot_file(tmp_path / "open.csv", [("p1", "EUR", "12.50"), ("p2", "JPY", "300")])
    with Server(store_url, "shadow", "--snapshot", str(snapshot)) as server:
        health = httpx.get(server.url + "/healthz", timeout=10).json()
        assert health["mode"] == "shadow" and health["schema"]["ok"] is True
        assert server.balance_minor("p1") == "12.50"
    with Server(store_url, "live", "--snapshot", str(snapshot)) as server:
        assert httpx.get(server.url + "/healthz", timeout=10).json()["mode"] == "live"
        assert server.balance_minor("p1") == "12.50"  # the snapshot is recorded once
        assert server.balance_minor("p2", "JPY") == "300"
    store = open_store(store_url, create=False)
    try:
        assert store.get_mode() == "live"
    finally:
        store.close()


def test_an_outdated_store_is_refused_until_db_upgrade(store_url: str) -> None:
    assert cli("db", "upgrade", "--db", store_url).returncode == 0
    store = open_store(store_url, create=False)
    store.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")  # type: ignore[attr-defined]
    store.close()
    result = cli("serve", "--listen", "127.0.0.1:0", "--mode", "live", "--db", store_url)
    assert result.returncode == 2 and "db upgrade" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/w.db"
    factory = CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})
    headers, body = factory.make("bet", transaction_id="t1", round_id="r1", amount="1.00")
    with Server(db, "shadow") as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            head = [
                "POST /rgs/default HTTP/1.1",
                f"Host: {host}",
                f"Content-Length: {len(body)}",
            ] + [f"{k}: {v}" for k, v in headers.items()]
            conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[:10])
            # The server has the request once it answers another one; then stop it mid-body.
            assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
            assert server.proc is not None
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.poll() is None
            conn.sendall(body[10:])
            answer = b""
            while chunk := conn.recv(65536):  # the server closes the connection as it stops
                answer += chunk
        assert server.proc.wait(timeout=30) == 0
    assert answer.startswith(b"HTTP/1.1 200") and b'"transaction_id":"t1"' in answer
    assert any("stopped" in line for line in server.lines)
    store = open_store(db, create=False)
    try:
        assert store.balances() == {}  # shadow: the unknown player had nothing to bet with
        ((count,),) = store.execute("SELECT count(*) FROM txns WHERE transaction_id = 't1'")  # type: ignore[attr-defined]
        assert count == 1
    finally:
        store.close()


def test_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    result = cli(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--mode",
        "live",
        "--db",
        f"sqlite:///{tmp_path / 'w.db'}",
        "--workers",
        "2",
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--inline"]], ids=["pool", "inline"])
def test_workers_share_one_ledger_and_stop_cleanly(
    pg_store_url: str, tmp_path: Path, extra: list[str]
) -> None:
    snapshot = snapshot_file(tmp_path / "open.csv", [("p1", "EUR", "10.00")])
    server = Server(
        pg_store_url, "live", "--snapshot", str(snapshot), "--workers", "2", *extra
    ).start()
    try:
        assert (
            server.admin(
                "POST",
                "/admin/sessions",
                json={
                    "session_id": "s1",
                    "player_id": "p1",
                    "currency": "EUR",
                    "aggregator": "default",
                },
            ).status_code
            == 201
        )
        factory = CallbackFactory(
            defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"}
        )
        answers = []
        with httpx.Client(timeout=10) as client:
            for i in range(40):  # new connections land on either worker
                headers, body = factory.make(
                    "bet", transaction_id=f"t{i}", amount="1.00", round_id="r1"
                )
                answers.append(
                    client.post(
                        server.url + "/rgs/default",
                        content=body,
                        headers={**headers, "connection": "close"},
                    ).status_code
                )
        assert answers.count(200) == 10 and answers.count(402) == 30
        assert server.balance_minor("p1") == "0.00"
    finally:
        code = server.stop()
    assert code == 0
    done = cli("audit", "verify", "--db", pg_store_url)
    assert done.returncode == 0, done.stdout + done.stderr
