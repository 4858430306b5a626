"""``rgs-shadow capture`` end to end: a real proxy process before a real upstream server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from shadow.dataset import open_captures, read_captures, read_captures_pandas

RGS_SHADOW = str(Path(sys.executable).with_name("rgs-shadow"))
pytestmark = pytest.mark.slow


class _Wallet(BaseHTTPRequestHandler):
    """Answers every callback with JSON naming its transaction id and a running balance."""

    protocol_version = "HTTP/1.1"
    counter = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with _Wallet.lock:
            _Wallet.counter += 1
            n = _Wallet.counter
        try:
            txid = json.loads(body).get("transaction_id")
        except ValueError:
            txid = None
        answer = json.dumps({"status": "OK", "balance": f"{n}.00", "transaction_id": txid})
        data = answer.encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Wallet)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CaptureProcess:
    """One ``rgs-shadow capture`` process group; always gone when the test ends."""

    def __init__(self, port: int, upstream: str, out: Path) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [
                RGS_SHADOW,
                "capture",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                upstream,
                "--out",
                str(out),
                "--proxy-id",
                "e2e",
            ],
            start_new_session=True,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"capture exited early: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise AssertionError("capture did not start listening within 60 s")

    def url(self, aggregator: str = "acme") -> str:
        return f"http://127.0.0.1:{self.port}/rgs/{aggregator}"

    def terminate(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=120)
        finally:
            self.kill()
        return self.proc.returncode, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        else:
            try:  # the mitmdump child may outlive its parent for a moment
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def processes() -> Iterator[list[CaptureProcess]]:
    started: list[CaptureProcess] = []
    yield started
    for proc in started:
        proc.kill()


def callback(txid: str) -> bytes:
    return json.dumps(
        {
            "event": "bet",
            "transaction_id": txid,
            "session_id": "s",
            "player_id": "p",
            "currency": "EUR",
            "amount": "1.00",
            "round_id": "r",
        }
    ).encode()


def send_all(url: str, txids: list[str], acked: dict[str, bytes], stop: threading.Event) -> None:
    """Send callbacks in order; remember the body of every response that reached us."""
    with httpx.Client(timeout=10) as client:
        for txid in txids:
            if stop.is_set():
                return
            try:
                resp = client.post(
                    url, content=callback(txid), headers={"content-type": "application/json"}
                )
            except httpx.HTTPError:
                return  # the proxy died under us: this one was not acknowledged
            if resp.status_code == 200:
                acked[txid] = resp.content


def assert_every_file_readable(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == [], leftovers
    for path in out.rglob("*.parquet"):
        pq.read_table(path)
    assert list((out / "_spool").glob("*.open")) + list((out / "_spool").glob("*.ready")) == []


def test_two_thousand_callbacks_appear_once_each_with_their_response(
    upstream: str, tmp_path: Path, processes: list[CaptureProcess]
) -> None:
    out = tmp_path / "captures"
    proxy = CaptureProcess(free_port(), upstream, out)
    processes.append(proxy)
    acked: dict[str, bytes] = {}
    stop = threading.Event()
    batches = [[f"tx-{w}-{i}" for i in range(500)] for w in range(4)]
    senders = [
        threading.Thread(target=send_all, args=(proxy.url(), batch, acked, stop))
        for batch in batches
    ]
    for t in senders:
        t.start()
    for t in senders:
        t.join(timeout=300)
    assert len(acked) == 2000

    # The same bet retried from a second source address.
    retry_body = callback("tx-retry")
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1")) as one:
        assert one.post(proxy.url(), content=retry_body).status_code == 200
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as two:
        assert two.post(proxy.url(), content=retry_body).status_code == 200

    code, err = proxy.terminate()
    assert code == 0, err

    table = read_captures(out)
    assert table.num_rows == 2002
    rows = table.to_pylist()
    by_txid: dict[str, list[dict[str, object]]] = {}
    for row in rows:
        by_txid.setdefault(str(row["transaction_id"]), []).append(row)
    for txid, body in acked.items():
        [row] = by_txid[txid]
        assert row["response_body"] == body
        assert row["response_status"] == 200
        assert row["request_body"] == callback(txid)
        assert row["aggregator"] == "acme" and row["event"] == "bet"
        assert not row["network_duplicate"]
    first, second = sorted(by_txid["tx-retry"], key=lambda r: r["captured_at"])  # type: ignore[arg-type, return-value]
    assert str(first["client_addr"]).startswith("127.0.0.1:") and not first["network_duplicate"]
    assert str(second["client_addr"]).startswith("127.0.0.2:") and second["network_duplicate"]
    assert len({r["capture_id"] for r in rows}) == 2002

    frame = read_captures_pandas(out)
    assert len(frame) == 2002 and frame["capture_id"].is_unique
    assert open_captures(out).count_rows() == 2002
    assert ds.dataset(out, format="parquet", partitioning="hive").count_rows() == 2002
    assert_every_file_readable(out)


def test_kill_9_under_load_loses_no_acknowledged_callback(
    upstream: str, tmp_path: Path, processes: list[CaptureProcess]
) -> None:
    out = tmp_path / "captures"
    port = free_port()
    proxy = CaptureProcess(port, upstream, out)
    processes.append(proxy)
    acked: dict[str, bytes] = {}
    stop = threading.Event()
    senders = [
        threading.Thread(
            target=send_all, args=(proxy.url(), [f"k-{w}-{i}" for i in range(5000)], acked, stop)
        )
        for w in range(3)
    ]
    for t in senders:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < 1500 and time.monotonic() < deadline:
        time.sleep(0.01)
    proxy.kill()  # kill -9 of the whole capture (CLI and mitmdump) while callbacks flow
    stop.set()
    for t in senders:
        t.join(timeout=60)
    assert len(acked) >= 1500

    restarted = CaptureProcess(port, upstream, out)
    processes.append(restarted)
    after: dict[str, bytes] = {}
    send_all(restarted.url(), [f"after-{i}" for i in range(50)], after, threading.Event())
    code, err = restarted.terminate()
    assert code == 0, err
    assert "recovered" in err  # the restart compacted what the killed proxy left in its spool

    table = read_captures(out, columns=["transaction_id", "response_body", "capture_id"])
    captured = dict(
        zip(
            table.column("transaction_id").to_pylist(),
            table.column("response_body").to_pylist(),
            strict=True,
        )
    )
    missing = [t for t in {**acked, **after} if t not in captured]
    assert missing == []
    assert all(captured[t] == body for t, body in {**acked, **after}.items())
    ids = table.column("capture_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert_every_file_readable(out)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RGS_SHADOW, "capture", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "localhost", "--upstream", "http://127.0.0.1:1"], "--listen"),
        (["--listen", "127.0.0.1:70000", "--upstream", "http://127.0.0.1:1"], "--listen"),
        (["--listen", "127.0.0.1:8080", "--upstream", "127.0.0.1:1"], "--upstream"),
        (["--listen", "127.0.0.1:8080", "--upstream", "http://h/x?y"], "--upstream"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = _run(*args, "--out", str(tmp_path / "c"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_unwritable_out_and_bad_config_are_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run(
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "http://127.0.0.1:1",
        "--out",
        str(blocker / "sub"),
    )
    assert result.returncode == 2 and "--out" in result.stderr
    config = tmp_path / "c.toml"
    config.write_text('[aggregators.a]\nsecret_env = "S"\n[capture]\nspool_mb = 3\n')
    result = _run(
        "--listen",
        "127.0.0.1:8080",
        "--upstream",
        "http://127.0.0.1:1",
        "--out",
        str(tmp_path / "c"),
        "--config",
        str(config),
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["rgs-shadow: capture.spool_mb: unknown key"]


def test_a_taken_port_is_exit_2(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _run(
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            "http://127.0.0.1:1",
            "--out",
            str(tmp_path / "c"),
        )
    assert result.returncode == 2 and "cannot listen" in result.stderr


def test_upstream_down_is_captured_with_its_error(
    tmp_path: Path, processes: list[CaptureProcess]
) -> None:
    out = tmp_path / "captures"
    proxy = CaptureProcess(free_port(), f"http://127.0.0.1:{free_port()}", out)
    processes.append(proxy)
    with httpx.Client(timeout=30) as client:
        answer = client.post(proxy.url(), content=callback("down-1"))
    assert answer.status_code == 502
    code, err = proxy.terminate()
    assert code == 0, err
    [row] = read_captures(out).to_pylist()
    assert row["transaction_id"] == "down-1"
    assert row["error"] and row["response_status"] is None
    assert row["latency_ms"] >= 0
