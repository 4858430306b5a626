"""``--target``: concurrent across players, strictly ordered per player (must show 3)."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from replay.run import ReplayOptions, run_replay
from wallet_core import WalletConfig

from .conftest import LiveRecorder


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[tuple[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0


@pytest.fixture
def wallet_server() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    rng = random.Random(9)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            doc = json.loads(body)
            with recorder.lock:
                recorder.in_flight += 1
                recorder.max_in_flight = max(recorder.max_in_flight, recorder.in_flight)
                recorder.arrivals.append((doc["player_id"], doc["transaction_id"]))
                delay = rng.random() * 0.01
            time.sleep(delay)
            answer = json.dumps(
                {
                    "status": "OK",
                    "balance": "1.00",
                    "currency": doc["currency"],
                    "transaction_id": doc["transaction_id"],
                }
            ).encode()
            with recorder.lock:
                recorder.in_flight -= 1
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    server.shutdown()
    server.server_close()


def test_target_keeps_each_players_order_while_running_players_in_parallel(
    tmp_path: Path, wallet_server: tuple[str, Recorder]
) -> None:
    url, recorder = wallet_server
    rec = LiveRecorder(tmp_path, {(f"p{i}", "EUR"): 10**6 for i in range(8)})
    rng = random.Random(4)
    expected: dict[str, list[str]] = {}
    for n in range(400):
        player = f"p{rng.randrange(8)}"
        txid = f"t{n}"
        expected.setdefault(player, []).append(txid)
        rec.send(
            "win",
            step_us=1000,
            session_id=f"s-{player}",
            player_id=player,
            currency="EUR",
            transaction_id=txid,
            amount="1.00",
            round_id="r",
        )
    rec.store.close()
    capture = rec.write(tmp_path / "capture")
    summary = run_replay(
        ReplayOptions(
            capture_dir=capture,
            out=tmp_path / "d.parquet",
            config=WalletConfig.single(),
            target=url,
            concurrency=8,
        )
    )
    assert summary.callbacks == 400
    seen: dict[str, list[str]] = {}
    for player, txid in recorder.arrivals:
        seen.setdefault(player, []).append(txid)
    assert seen == expected
    assert recorder.max_in_flight > 1, "players must run concurrently"
    rows = pq.read_table(tmp_path / "d.parquet").to_pylist()
    assert len(rows) == 400 and {r["code"] for r in rows} == {"OK"}
    assert all(r["mode"] == "live" for r in rows)


def test_speed_1x_keeps_the_captured_gaps(
    tmp_path: Path, wallet_server: tuple[str, Recorder]
) -> None:
    url, _ = wallet_server
    rec = LiveRecorder(tmp_path, {("p1", "EUR"): 100})
    for n in range(3):
        rec.send(
            "win",
            step_us=400_000,
            session_id="s",
            player_id="p1",
            currency="EUR",
            transaction_id=f"t{n}",
            amount="1.00",
            round_id="r",
        )
    rec.store.close()
    capture = rec.write(tmp_path / "capture")
    started = time.monotonic()
    run_replay(
        ReplayOptions(
            capture_dir=capture,
            out=tmp_path / "d.parquet",
            config=WalletConfig.single(),
            target=url,
            speed=1.0,
        )
    )
    assert time.monotonic() - started >= 0.8  # two captured gaps of 0.4 s were kept
