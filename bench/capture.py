"""What the capture addon costs a mitmdump reverse proxy, measured in one run.

    /work/venv/bin/python bench/capture.py [--seconds 4] [--rounds 2] [--connections 8]

Why this shape: mitmproxy itself tops out near 1,000 requests/s on one core,
and the addon must not lower that noticeably.  Machines drift (other load,
CPU frequency), so every variant runs at the same time as the others, on its
own port behind the same upstream, and the measurement rounds are interleaved
(A B C D, B C D A, ...) under the same closed-loop load.  Variants:

* ``direct``  - the upstream without a proxy (the latency floor);
* ``none``    - mitmdump with no addon;
* ``noop``    - mitmdump with a script addon (``-s``) whose ``response`` hook does nothing;
* ``w-file``  - mitmdump with ``-w`` (its own flow file);
* ``capture`` - what ``rgs-shadow capture`` runs: mitmdump's start-up with the
  capture addon registered directly (``python -m shadow.capture_proxy``);
* ``capture-s`` - the same addon loaded as a script, ``mitmdump -s shadow/addon.py``.

The capture variants start a compactor process (it inherits the proxies'
CPU); its cost per row is measured on its own, and added to the capture's CPU
per request in one line of the output.

Everything runs on loopback and stops by itself (child processes are killed in
``finally``; the upstream also exits after ``--max-lifetime`` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "shadow" / "addon.py"
MITMDUMP = str(Path(sys.executable).with_name("mitmdump"))
ANSWER = b'{"status":"OK","balance":"90.00","currency":"EUR"}'
NOOP_ADDON = "def response(flow):\n    pass\n"


# -- upstream: a minimal keep-alive HTTP/1.1 server (its own process) ----------------


async def _serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(ANSWER)).encode() + b"\r\n\r\n" + ANSWER
    )
    try:
        while True:
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(head)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _upstream(port: int, lifetime: float) -> None:
    server = await asyncio.start_server(_serve_one, "127.0.0.1", port, backlog=512)
    async with server:
        await asyncio.sleep(lifetime)


# -- load: closed loop, N keep-alive connections --------------------------------------


async def _client(port: int, deadline: float, latencies: list[float], tag: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while time.perf_counter() < deadline:
            n += 1
            body = json.dumps(
                {
                    "event": "bet",
                    "transaction_id": f"b{tag}-{n}-{time.time_ns()}",
                    "session_id": "s",
                    "player_id": "p",
                    "currency": "EUR",
                    "amount": "1.00",
                }
            ).encode()
            request = (
                b"POST /rgs/acme HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            start = time.perf_counter()
            writer.write(request)
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _load(port: int, seconds: float, connections: int, tag: int) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    await asyncio.gather(
        *(_client(port, deadline, latencies, tag * 100 + i) for i in range(connections))
    )
    return latencies


async def _load_together(
    ports: dict[str, int], seconds: float, connections: int, tag: int
) -> dict[str, list[float]]:
    """Every variant under load at the same moment: whatever slows the machine slows all."""
    latencies: dict[str, list[float]] = {name: [] for name in ports}
    deadline = time.perf_counter() + seconds
    await asyncio.gather(
        *(
            _client(port, deadline, latencies[name], tag * 1000 + j * 100 + i)
            for j, (name, port) in enumerate(ports.items())
            for i in range(connections)
        )
    )
    return latencies


# -- orchestration --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: a child exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: nothing listening on {port} after {timeout} s")


def _mitmdump(port: int, upstream: int, extra: list[str]) -> list[str]:
    return [
        MITMDUMP,
        "--mode",
        f"reverse:http://127.0.0.1:{upstream}",
        "--listen-host",
        "127.0.0.1",
        "-p",
        str(port),
        "-q",
        "--set",
        "flow_detail=0",
        "--set",
        "connection_strategy=lazy",  # as rgs-shadow capture runs it
        *extra,
    ]


def _pinned(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child (and every thread it starts) to ``cpu``."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.5, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the proxies to one CPU and the load generator to another",
    )
    parser.add_argument(
        "--together-rounds", type=int, default=8, help="rounds with every proxy loaded at once"
    )
    parser.add_argument("--upstream-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-lifetime", type=float, default=300.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_server:
        asyncio.run(_upstream(args.upstream_server, args.max_lifetime))
        return

    cpus = sorted(os.sched_getaffinity(0))
    load_cpu = proxy_cpu = None
    if args.pin and len(cpus) >= 2:  # the proxies on one CPU, the load and upstream on another
        load_cpu, proxy_cpu = cpus[0], cpus[1]
        os.sched_setaffinity(0, {load_cpu})
    work = Path(tempfile.mkdtemp(prefix="rgs-bench-"))
    (work / "noop.py").write_text(NOOP_ADDON)
    up = _free_port()
    ports = {name: _free_port() for name in ("none", "noop", "w-file", "capture", "capture-s")}
    extras = {
        "none": [],
        "noop": ["-s", str(work / "noop.py")],
        "w-file": ["-w", str(work / "flows.mitm")],
        "capture": [
            "--set",
            f"capture_dir={work / 'captures'}",
            "--set",
            "capture_proxy_id=bench",
        ],
        "capture-s": [
            "-s",
            str(ADDON),
            "--set",
            f"capture_dir={work / 'captures'}",
            "--set",
            "capture_proxy_id=bench_s",
        ],
    }
    direct = {"capture"}  # registered by shadow.capture_proxy instead of mitmdump -s
    procs: list[subprocess.Popen[bytes]] = []
    pids: dict[str, int] = {}
    cpu: dict[str, float] = dict.fromkeys(ports, 0.0)
    try:
        upstream = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--upstream-server",
                str(up),
                "--max-lifetime",
                str(args.max_lifetime),
            ],
            preexec_fn=_pinned(load_cpu),
        )
        procs.append(upstream)
        _wait_listening(up, upstream)
        for name, port in ports.items():
            command = _mitmdump(port, up, extras[name])
            if name in direct:
                command[:1] = [sys.executable, "-m", "shadow.capture_proxy"]
            proc = subprocess.Popen(
                command, preexec_fn=_pinned(proxy_cpu), env={**os.environ, "PYTHONPATH": str(ROOT)}
            )
            procs.append(proc)
            pids[name] = proc.pid
            _wait_listening(port, proc)
        targets = {"direct": up, **ports}
        for port in targets.values():  # warm-up: imports, connection setup, JIT-free paths
            asyncio.run(_load(port, 0.5, args.connections, 0))
        samples: dict[str, list[float]] = {name: [] for name in targets}
        elapsed: dict[str, float] = dict.fromkeys(targets, 0.0)
        samples["direct"] = asyncio.run(_load(up, args.seconds, args.connections, 99))
        elapsed["direct"] = args.seconds  # the floor: measured once
        per_round: dict[str, list[float]] = {name: [] for name in ports}
        for r in range(args.rounds):
            order = list(ports.items())
            order = order[r % len(order) :] + order[: r % len(order)]  # no variant always first
            for i, (name, port) in enumerate(order):
                before = _cpu_s(pids[name])
                lat = asyncio.run(_load(port, args.seconds, args.connections, r * 10 + i))
                cpu[name] += _cpu_s(pids[name]) - before
                samples[name] += lat
                elapsed[name] += args.seconds
                per_round[name].append(len(lat) / args.seconds)
        together: dict[str, list[float]] = {name: [] for name in ports}
        for r in range(args.together_rounds):
            counts = asyncio.run(_load_together(ports, args.seconds, args.connections, 50 + r))
            for name, lat in counts.items():
                together[name].append(len(lat) / args.seconds)
    finally:
        for proc in reversed(procs):
            _stop(proc)
    rows = {n: (len(s) / elapsed[n], _pct(s, 0.5), _pct(s, 0.99)) for n, s in samples.items()}
    base = rows["none"][0]
    print(
        f"\ncapture benchmark: {args.connections} keep-alive connections, {args.rounds} x "
        f"{args.seconds:g} s per variant, interleaved; nproc={os.cpu_count()}"
    )
    floor50, floor99 = rows["direct"][1], rows["direct"][2]
    print(
        f"{'variant':<9} {'req/s':>8} {'vs none':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'+p50 ms':>8} {'+p99 ms':>8}   (+: added over direct)"
    )
    for name, (rps, p50, p99) in rows.items():
        print(
            f"{name:<9} {rps:8.0f} {rps / base:8.1%} {p50:8.2f} {p99:8.2f} "
            f"{p50 - floor50:8.2f} {p99 - floor99:8.2f}"
        )
    cost = 1 - rows["capture"][0] / base
    print(
        f"capture/none throughput ratio: {rows['capture'][0] / base:.3f} "
        f"(cost {cost:.1%}); capture/noop: {rows['capture'][0] / rows['noop'][0]:.3f}; "
        f"capture/w-file: {rows['capture'][0] / rows['w-file'][0]:.3f}"
    )
    ratios = [c / n for c, n in zip(per_round["capture"], per_round["none"], strict=True)]
    noise = [c / n for c, n in zip(per_round["noop"], per_round["none"], strict=True)]
    print(
        f"per-round capture/none: {', '.join(f'{x:.3f}' for x in ratios)} "
        f"(median {statistics.median(ratios):.3f}); noop/none, which should be 1: "
        f"{', '.join(f'{x:.3f}' for x in noise)}"
    )
    # CPU per proxied request barely depends on the neighbours' load, unlike throughput:
    # the capture thread's work (the compactor) is inside the same process and counted too.
    per_req = {name: cpu[name] / max(len(samples[name]), 1) * 1e6 for name in ports}
    print(
        "proxy CPU per request: "
        + ", ".join(f"{name} {us:,.0f} us" for name, us in per_req.items())
        + f"; capture/none CPU cost {per_req['capture'] / per_req['none'] - 1:+.1%}"
        + f" (capture-s/none {per_req['capture-s'] / per_req['none'] - 1:+.1%},"
        + f" noop/none {per_req['noop'] / per_req['none'] - 1:+.1%},"
        + f" w-file/none {per_req['w-file'] / per_req['none'] - 1:+.1%})"
    )
    hook_us, compactor_us = _hot_path_us(work)
    whole = (per_req["capture"] + compactor_us) / per_req["none"] - 1
    print(
        f"  the compactor process adds {compactor_us:.1f} us per row (measured below, in its own "
        f"process: on another core it costs the proxy nothing); capture with it, over none: "
        f"{whole:+.1%}"
    )
    if args.together_rounds:
        shares = {
            name: [v / n for v, n in zip(together[name], together["none"], strict=True)]
            for name in ports
        }
        print(
            f"all {len(ports)} proxies loaded at once ({args.together_rounds} x {args.seconds:g} s, "
            f"{args.connections} connections each; the machine's noise hits every variant "
            "alike): req/s vs none, median of rounds: "
            + ", ".join(f"{name} {statistics.median(v):.3f}" for name, v in shares.items())
        )
        print(
            "  per round capture/none: "
            + ", ".join(f"{x:.3f}" for x in shares["capture"])
            + "; capture-s/none: "
            + ", ".join(f"{x:.3f}" for x in shares["capture-s"])
            + "; noop/none: "
            + ", ".join(f"{x:.3f}" for x in shares["noop"])
        )
    print(
        f"hot path alone (copy one record, encode, append to the spool): {hook_us:.1f} us; "
        f"the compactor process per row (complete, flag, Parquet): {compactor_us:.1f} us"
    )
    rows_captured = _count_captured(work / "captures")
    print(
        f"rows captured by the two capture variants: {rows_captured} "
        f"(sent to them: {len(samples['capture']) + len(samples['capture-s'])} in the "
        "interleaved rounds, plus warm-up and the rounds at once)"
    )
    shutil.rmtree(work, ignore_errors=True)


def _hot_path_us(work: Path, n: int = 20000) -> tuple[float, float]:
    """Microseconds per record of the hook's copy + encode + append, and of the compactor's
    work on those records (decode, complete, flag, Parquet), without mitmproxy around them."""
    sys.path.insert(0, str(ROOT))
    from shadow.compactor import Compactor
    from shadow.duplicates import DuplicateTracker
    from shadow.spool import SpoolWriter
    from shadow.spool_record import SpoolRecord, encode_spool_record

    bodies = [
        b'{"event":"bet","transaction_id":"t-%d","session_id":"s","amount":"1.00"}' % i
        for i in range(-100, n)
    ]
    headers = ((b"content-type", b"application/json"), (b"x-rgs-signature", b"sha256=" + b"a" * 64))
    root = work / "hot"
    writer = SpoolWriter(root / "_spool", "hot", 64 << 20, 3600)
    writer.acquire()
    start = time.perf_counter()
    for i in range(-100, n):  # the first 100: the compactor's warm-up segment
        if i == 0:
            writer.close()
            start = time.perf_counter()
        now, body = time.time(), bodies[i + 100]
        record = SpoolRecord(
            f"id-{i}",
            now,
            ("127.0.0.1", 5000),
            "POST",
            "/rgs/acme",
            headers,
            body,
            200,
            headers[:1],
            ANSWER,
            now + 0.001,
            None,
            False,
            None,
            None,
            len(body),
            len(ANSWER),
            "hot",
        )
        writer.append(encode_spool_record(record))
    hook = (time.perf_counter() - start) / n * 1e6
    writer.close()
    writer.release()
    compactor = Compactor(
        root, "hot", report_error=print, report_info=print, tracker=DuplicateTracker(48)
    )
    warm = sorted((root / "_spool").glob("*.ready"))[0]  # pyarrow loads parts on first use
    compactor.compact_segment(warm.rename(warm.with_name("hot-0-warm.ready")))
    start = time.perf_counter()
    compactor.compact_ready()
    return hook, (time.perf_counter() - start) / n * 1e6


def _count_captured(capture_dir: Path) -> int:
    sys.path.insert(0, str(ROOT))
    from shadow.dataset import open_captures

    return int(open_captures(capture_dir).count_rows())


if __name__ == "__main__":
    main()
