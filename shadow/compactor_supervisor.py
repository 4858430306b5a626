"""The proxy's side of compaction: keep the spool moving and the compactor process alive.

Why the compactor is a process and not a thread of the proxy: mitmproxy serves
every connection from one event-loop thread, and a thread beside it takes the
same GIL, so each row turned into Parquet there is time the proxy does not
serve.  In its own process it runs on another core.  What stays here is cheap:
rotating the open segment by age, the periodic ``fsync`` (both need the
writer's file descriptor), and restarting the process if it dies.  This module
imports neither pyarrow nor the compactor, so neither loads into the proxy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .spool import SpoolWriter

__all__ = ["CompactorSpec", "CompactorSupervisor"]

Report = Callable[[str], None]
#: A compactor that keeps dying (say, it cannot import) is restarted at most this often.
RESTART_EVERY_S = 5.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True, slots=True)
class CompactorSpec:
    """What the compactor process needs, passed to it as JSON on its command line."""

    capture_dir: str
    proxy_id: str
    duplicate_window_hours: int
    merge_seconds: float
    merge_grace_seconds: float
    dialects: dict[str, str] = field(default_factory=dict)  # aggregator -> dialect name
    poll_seconds: float = 0.25

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CompactorSpec:
        return cls(**json.loads(text))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "shadow.compactor_process", self.to_json()]


class CompactorSupervisor:
    """Runs beside the hooks: rotation, fsync, and one compactor process at a time.

    ``stop`` publishes the open segment, then closes the process's stdin: it
    compacts every segment left and exits, and ``stop`` waits for that.
    """

    def __init__(
        self,
        writer: SpoolWriter,
        spec: CompactorSpec,
        *,
        report_error: Report,
        fsync_seconds: float,
    ) -> None:
        self.writer = writer
        self.spec = spec
        self.report_error = report_error
        self.fsync_seconds = fsync_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_failure = ""

    def start(self) -> None:
        """Publish what a previous run left open, start the process, then the thread.

        Leftover ``.open`` segments are renamed here, before the first append:
        only the writer's side knows which segment is not being written.
        """
        self.writer.recover_open()
        self.process = self._spawn()
        self._thread = threading.Thread(
            target=self._run, name="rgs-shadow-spool-keeper", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            self.writer.close()
        except OSError as exc:
            self.report_error(f"could not publish the last spool segment: {exc}")
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        code = process.wait()
        if code != 0:
            self.report_error(
                f"the compactor process exited with status {code}; segments are kept in "
                f"{self.writer.spool_dir} for the next start"
            )

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._spawned_at = time.monotonic()
        env = dict(os.environ)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
        return subprocess.Popen(self.spec.command(), stdin=subprocess.PIPE, env=env)

    def _run(self) -> None:
        last_sync = time.monotonic()
        while not self._stop.wait(self.spec.poll_seconds):
            now = time.monotonic()
            try:
                self.writer.rotate_if_due(now)
                if self.fsync_seconds > 0 and now - last_sync >= self.fsync_seconds:
                    self.writer.sync()
                    last_sync = now
                self._keep_alive()
                self._last_failure = ""
            except Exception as exc:  # noqa: BLE001 - keep the thread alive, say it loudly
                message = f"capture spool housekeeping failed: {exc}; retrying"
                if message != self._last_failure:
                    self.report_error(message)
                    self._last_failure = message

    def _keep_alive(self) -> None:
        process = self.process
        if process is None or process.poll() is None:
            return
        if time.monotonic() - self._spawned_at < RESTART_EVERY_S:
            return
        self.report_error(
            f"the compactor process exited with status {process.returncode}; starting it again"
        )
        if process.stdin is not None:
            process.stdin.close()
        self.process = self._spawn()
