"""The README's first-week walkthrough, run command by command (doc-tested).

Blocks between the walkthrough markers run in order in one scratch directory;
a block starting with ``# service`` is started in the background, waited for
(its ``--listen`` port), and stopped with SIGTERM at the end, which must exit 0.
Ports are swapped for free ones so the test cannot collide with anything else.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough_blocks() -> list[str]:
    text = README.read_text()
    section = text.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->")[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"service exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_readme_first_commands_are_the_fresh_machine_ones() -> None:
    head = README.read_text().splitlines()[:12]
    assert any("pip install -e . && .venv/bin/rgs-shadow demo" in line for line in head)
    assert any("scripts/test" in line for line in head)
    ci = (README.parent / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("scripts/test")


def test_walkthrough_runs_as_written(tmp_path: Path) -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) >= 6
    ports = {"9000": str(free_port()), "8080": str(free_port())}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RGS_SHADOW_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    exports: list[str] = []
    services: list[subprocess.Popen[bytes]] = []
    try:
        for block in blocks:
            for old, new in ports.items():
                block = block.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
            exports += [line for line in block.splitlines() if line.startswith("export ")]
            script = "\n".join([*exports, block])
            if block.startswith("# service"):
                command = "\n".join(exports + ["exec " + block.splitlines()[1]])
                proc = subprocess.Popen(
                    ["bash", "-c", command],
                    cwd=tmp_path,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                services.append(proc)
                listen = re.search(r"--listen 127\.0\.0\.1:(\d+)", block)
                assert listen is not None
                wait_listening(int(listen.group(1)), proc)
                continue
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert done.returncode == 0, (
                f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            )
    finally:
        codes = []
        for proc in reversed(services):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes.append(proc.wait(timeout=60))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
    assert codes == [0] * len(services)
    assert (tmp_path / "report.html").stat().st_size > 0
