"""A real ``rgs-shadow serve`` in a subprocess on 127.0.0.1, for the end-to-end tests.

The server listens on port 0 and prints the chosen port on its ready line, so there
is no race for a free port.  Its standard error is drained by a thread (a full pipe
would stall it) and kept for failure messages.  :meth:`Server.stop` always ends it:
SIGTERM, then SIGKILL if it has not exited within its grace period.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

SECRET = "secret"  # CallbackFactory's default secret
TOKEN = "admin-token"
READY = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
_ENTRY = "import sys; from shadow.cli import main; sys.argv[0] = 'rgs-shadow'; main()"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``rgs-shadow ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-c", _ENTRY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=server_env() | (env or {}),
    )


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGS_SHADOW_")}
    env.update(RGS_SHADOW_SECRET=SECRET, RGS_SHADOW_ADMIN_TOKEN=TOKEN)
    return env


class Server:
    """One server process; use as a context manager so it never outlives the test."""

    def __init__(self, db: str, mode: str = "live", *extra: str) -> None:
        self.db = db
        self.mode = mode
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self.url = ""

    def start(self, timeout: float = 60) -> Server:
        args = ["serve", "--listen", "127.0.0.1:0", "--mode", self.mode, "--db", self.db]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ENTRY, *args, *self.extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=server_env(),
        )
        ready: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._drain, args=(self.proc, ready), daemon=True).start()
        try:
            port = ready.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.lines)) from None
        if not port:
            raise RuntimeError("the server exited:\n" + "\n".join(self.lines))
        self.url = f"http://127.0.0.1:{port}"
        return self

    def _drain(self, proc: subprocess.Popen[bytes], ready: queue.Queue[str]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = READY.search(line)
            if match:
                ready.put(match.group(1))
        ready.put("")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM and wait; SIGKILL after ``grace`` seconds. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def admin(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {"authorization": f"Bearer {TOKEN}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]

    def balance_minor(self, player: str, currency: str = "EUR") -> str:
        response = self.admin("GET", f"/admin/balances/{player}/{currency}")
        response.raise_for_status()
        return str(response.json()["balance"])

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def snapshot_file(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("player_id,currency,balance\n" + "".join(f"{p},{c},{b}\n" for p, c, b in rows))
    return path
