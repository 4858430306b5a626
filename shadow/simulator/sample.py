"""Make sample traffic with real processes: a wallet, ``rgs-shadow capture``, the simulator.

``python -m shadow.simulator.sample sample_traffic`` regenerates the repository's
``sample_traffic/``; the end-to-end tests call :func:`make_sample` the same way,
with the faulty wallet or with ``rgs-shadow serve --mode shadow`` behind the proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SAMPLE_SECRET", "make_sample", "sample_env"]

#: Signs the bundled sample traffic only; it is public on purpose (never use it for real).
SAMPLE_SECRET = "rgs-shadow-public-sample-secret"
SAMPLE_TOKEN = "rgs-shadow-sample-admin"
CONFIG = """\
# Configuration of the bundled sample traffic (rgs-shadow demo).
[aggregators.acme]
dialect = "generic"
secret_env = "RGS_SHADOW_SAMPLE_SECRET"

[sessions]
timeout_seconds = 3
"""
#: What each fault of the faulty wallet must show up as in the diff.
FAULT_KINDS = {
    "double_credit": ["DOUBLE_APPLIED"],
    "slow": ["SLOW_RESPONSE"],
    "overdraft": ["LIVE_RESPONSE_MISMATCH", "STATUS_MISMATCH"],
    "transient_503": [],
}
_READY = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def sample_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGS_SHADOW_")}
    env.update(RGS_SHADOW_SAMPLE_SECRET=SAMPLE_SECRET, RGS_SHADOW_ADMIN_TOKEN=SAMPLE_TOKEN)
    return env


def _cli() -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from shadow.cli import main; sys.argv[0] = 'rgs-shadow'; main()",
    ]


@dataclass
class _Process:
    proc: subprocess.Popen[bytes]
    lines: list[str]

    def stop(self, sig: int = signal.SIGTERM, grace: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def _start(
    args: list[str], env: dict[str, str], ready: re.Pattern[str] | None
) -> tuple[_Process, str]:
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    lines: list[str] = []
    found: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            lines.append(line)
            match = ready.search(line) if ready else None
            if match:
                found.put(match.group(1))
        found.put("")

    threading.Thread(target=drain, daemon=True).start()
    handle = _Process(proc, lines)
    if ready is None:
        return handle, ""
    try:
        url = found.get(timeout=60)
    except queue.Empty:
        url = ""
    if not url:
        handle.stop(signal.SIGKILL)
        raise RuntimeError(f"{args[-1]} did not start:\n" + "\n".join(lines))
    return handle, url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: _Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise RuntimeError("capture exited:\n" + "\n".join(proc.lines))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("capture did not start listening")


def make_sample(
    out: Path,
    *,
    seed: int = 7,
    players: int = 12,
    rounds: int = 60,
    wallet: str = "faulty",
    work: Path | None = None,
) -> dict[str, object]:
    """Capture a simulated aggregator in front of ``wallet`` (``faulty`` or ``shadow``) into ``out``.

    Writes ``out/capture/``, ``settlement.csv``, ``planted.json``, ``simulation.json``,
    ``config.toml`` and ``expected.json`` (every divergence the diff must find, and
    nothing else).  Returns the expected list and where the wallet's ledger is.
    """
    out.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="rgs-shadow-sample-"))
    work.mkdir(parents=True, exist_ok=True)
    config = out / "config.toml"
    config.write_text(CONFIG)
    env = sample_env()
    db = f"sqlite:///{work / 'wallet.db'}"
    faults_log = work / "faults.jsonl"
    faults_log.unlink(missing_ok=True)
    if wallet == "faulty":
        args = [
            sys.executable,
            "-m",
            "shadow.simulator.faulty_wallet",
            "--db",
            db,
            "--config",
            str(config),
            "--faults-log",
            str(faults_log),
        ]
    else:
        args = [
            *_cli(),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "shadow",
            "--db",
            db,
            "--config",
            str(config),
        ]
    wallet_proc, wallet_url = _start(args, env, _READY)
    capture_proc = None
    try:
        port = _free_port()
        capture_dir = out / "capture"
        shutil.rmtree(capture_dir, ignore_errors=True)
        capture_proc, _ = _start(
            [
                *_cli(),
                "capture",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                wallet_url,
                "--out",
                str(capture_dir),
                "--config",
                str(config),
                "--proxy-id",
                "sample",
            ],
            env,
            None,
        )
        _wait_port(port, capture_proc)
        done = subprocess.run(
            [
                *_cli(),
                "simulate",
                "--target",
                f"http://127.0.0.1:{port}",
                "--aggregator",
                "acme",
                "--seed",
                str(seed),
                "--out",
                str(out),
                "--players",
                str(players),
                "--rounds",
                str(rounds),
                "--faults",
                "all",
                "--operator-url",
                wallet_url,
                "--session-timeout-s",
                "3",
                "--config",
                str(config),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(f"simulate failed:\n{done.stderr}")
        time.sleep(4.0)  # let a deliberately slow answer finish before the proxy stops
        code = capture_proc.stop()
        if code != 0:
            raise RuntimeError("capture did not stop cleanly:\n" + "\n".join(capture_proc.lines))
    finally:
        if capture_proc is not None:
            capture_proc.stop(signal.SIGKILL)
        wallet_proc.stop()
    shutil.rmtree(out / "capture" / "_spool", ignore_errors=True)  # locks only, once stopped
    expected = json.loads((out / "planted.json").read_text())
    for entry in expected:
        entry["source"] = "export"
    if faults_log.exists():
        for line in faults_log.read_text().splitlines():
            fault = json.loads(line)
            for kind in FAULT_KINDS[fault["fault"]]:
                expected.append(
                    {
                        "kind": kind,
                        "transaction_id": fault["transaction_id"],
                        "what": f"the faulty wallet's {fault['fault']}",
                        "source": "wallet",
                    }
                )
    expected.sort(key=lambda e: (e["kind"], e["transaction_id"]))
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return {"expected": expected, "wallet_db": db}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate sample traffic with real processes.")
    parser.add_argument("out", type=Path, nargs="?", default=Path("sample_traffic"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--players", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args(argv)
    result = make_sample(args.out, seed=args.seed, players=args.players, rounds=args.rounds)
    print(f"sample traffic written to {args.out}: {len(result['expected'])} expected divergences")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
