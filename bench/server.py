"""Callbacks/s and latency of a running ``rgs-shadow serve --mode live``, SQLite and PostgreSQL.

    /work/venv/bin/python bench/server.py [--seconds 10] [--rate 500] [--connections 16]

For each store a fresh server (``--listen 127.0.0.1:0``, live mode, a new scratch
database) gets 500 sessions and deposits through the operator API, then a load
generator in its own process (``bench/_load.py``: asyncio, HTTP/1.1 keep-alive)
sends it pre-signed, all-distinct callbacks with the mix of ``bench/engine.py``
(45 % bets, 35 % wins, 10 % balances, 5 % refunds, 5 % settles over 500 players):

* open loop at ``--rate`` callbacks/s (latency measured from when each request was
  due), the latency target: p99 under 50 ms at 500 callbacks/s;
* closed loop on ``--connections`` connections: the most the server sustains.

Beside it, on the same PostgreSQL and in the same run (before and after the wallet's
PostgreSQL load), pgbench's TPC-B-like transactions/s with as many clients as the
closed loop has connections, in a scratch database.  Target: the wallet's
PostgreSQL callbacks/s at least 0.5 of pgbench's.  PostgreSQL is served twice, each
time fresh: ``--workers 2`` with the default thread pool, and ``--inline --workers 4``
(each process decides one callback at a time on its event loop; docs/server.md).
pgbench runs before, between and after; its mean is the reference.

PostgreSQL: ``RGS_SHADOW_TEST_PG_URL`` if set (an admin URL; scratch databases are
created and dropped on it), else a throwaway cluster started the way
``.ci/services/postgres.sh`` starts it (that script, sourced by a shell that stops the
cluster when this process closes its stdin, so the cluster never outlives the run).
Everything is on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]  # run as a script: the bench and tests packages by their names

from bench._load import http_request, write_requests  # noqa: E402
from bench.engine import _cpu, workload  # noqa: E402
from tests._server import TOKEN, Server  # noqa: E402

PLAYERS = 500
WARMUP = 1000
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def machine() -> str:
    return (
        f"machine: {platform.machine()} {_cpu()}, {os.cpu_count()} cores, "
        f"Linux {platform.release()}, python {platform.python_version()}, "
        f"sqlite {sqlite3.sqlite_version}"
    )


# -- PostgreSQL -----------------------------------------------------------------------


class Postgres:
    """The admin URL of a PostgreSQL server; starts a throwaway cluster when none is given."""

    def __init__(self) -> None:
        self.shell: subprocess.Popen[str] | None = None
        url = os.environ.get("RGS_SHADOW_TEST_PG_URL")
        if url:
            self.url = url
            return
        script = ROOT / ".ci" / "services" / "postgres.sh"
        # The shell sources the script (which sets an EXIT trap that stops the cluster), prints
        # the URL, then waits for EOF on stdin: when this process ends, so does the cluster.
        self.shell = subprocess.Popen(
            ["bash", "-c", f'set -euo pipefail; . "{script}"; echo "$RGS_SHADOW_TEST_PG_URL"; cat'],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "RGS_SHADOW_TEST_PG_URL"},
        )
        assert self.shell.stdout is not None
        self.url = self.shell.stdout.readline().strip()
        if not self.url.startswith("postgresql://"):
            self.stop()
            raise SystemExit("bench: the PostgreSQL cluster did not start")

    def with_database(self, name: str) -> str:
        base, _, tail = self.url.partition("?")
        head = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
        return f"{head}/{name}" + (f"?{tail}" if tail else "")

    def create(self, prefix: str) -> tuple[str, str]:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name, self.with_database(name)

    def drop(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.encode())

    def version(self) -> str:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=10) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
        return f"PostgreSQL {row[0] if row else '?'} (fsync={fsync[0] if fsync else '?'})"

    def stop(self) -> None:
        if self.shell is not None and self.shell.poll() is None:
            assert self.shell.stdin is not None
            self.shell.stdin.close()  # EOF: the shell exits and its trap stops the cluster
            self.shell.wait(timeout=120)


def pgbench_binary() -> str:
    found = shutil.which("pgbench") or str(PG_BIN / "pgbench")
    return found


def pgbench_init(url: str, scale: int) -> None:
    subprocess.run(
        [pgbench_binary(), "-i", "-q", "-s", str(scale), url],
        check=True,
        capture_output=True,
        timeout=600,
    )


def pgbench_tps(url: str, clients: int, seconds: float) -> float:
    done = subprocess.run(
        [pgbench_binary(), "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds))), url],
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if not match:
        raise SystemExit(f"bench: cannot read pgbench's tps:\n{done.stdout}\n{done.stderr}")
    return float(match.group(1))


# -- load -----------------------------------------------------------------------------


def build_requests(path: Path, n: int) -> int:
    calls = workload(n, players=PLAYERS)
    return write_requests(path, (http_request("/rgs/default", h, b) for h, b in calls))


def open_accounts(server: Server) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        for p in range(PLAYERS):
            session = {
                "session_id": f"s{p}",
                "player_id": f"p{p}",
                "currency": "EUR",
                "aggregator": "default",
            }
            client.post("/admin/sessions", json=session).raise_for_status()
            deposit = {
                "reference": f"open-{p}",
                "player_id": f"p{p}",
                "currency": "EUR",
                "amount": "100000.00",
            }
            client.post("/admin/adjustments", json=deposit).raise_for_status()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of a process and its children (``serve --workers``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_seconds(int(child)) for child in children)


def load(requests: Path, port: int, mode: str, skip: int, **opts: Any) -> dict[str, Any]:
    args = [sys.executable, str(ROOT / "bench" / "_load.py"), str(requests), "--port", str(port)]
    args += ["--mode", mode, "--skip", str(skip)]
    for key, value in opts.items():
        args += [f"--{key}", str(value)]
    done = subprocess.run(args, check=True, capture_output=True, text=True, timeout=900)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(
    db: str, requests: Path, args: argparse.Namespace, serving: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Open loop then closed loop against one fresh live server on ``db``."""
    opened = int(args.rate * args.seconds)
    workers = args.workers if db.startswith("postgresql") else 1
    with Server(db, "live", "--workers", str(workers), *serving) as server:
        open_accounts(server)
        port = int(server.url.rsplit(":", 1)[1])
        load(requests, port, "closed", 0, count=WARMUP, connections=args.connections, seconds=60)
        cpu = cpu_seconds(server.pid)
        at_rate = load(
            requests,
            port,
            "open",
            WARMUP,
            rate=args.rate,
            seconds=args.seconds,
            connections=args.open_connections,
        )
        at_rate["server_cpu"] = cpu_seconds(server.pid) - cpu
        cpu = cpu_seconds(server.pid)
        flat_out = load(
            requests,
            port,
            "closed",
            WARMUP + opened,
            connections=args.connections,
            seconds=args.seconds,
        )
        flat_out["server_cpu"] = cpu_seconds(server.pid) - cpu
    return [at_rate, flat_out]


def row(store: str, label: str, r: dict[str, Any]) -> str:
    codes = ", ".join(f"{k} {v / r['answered']:.0%}" for k, v in list(r["codes"].items())[:4])
    note = " (request pool used up: raise --pool)" if r["pool_exhausted"] else ""
    errors = f", {r['errors']} connection errors" if r["errors"] else ""
    busy = r["server_cpu"] / r["elapsed_s"]
    per = r["server_cpu"] / max(r["answered"], 1) * 1e6
    return (
        f"{store:<10} {label:<18} {r['rate']:>9,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
        f"{r['max_ms']:>8.1f} {busy:>7.0%} {per:>8,.0f}   {codes}{errors}{note}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per load and per pgbench run")
    parser.add_argument("--rate", type=float, default=500.0, help="open loop: callbacks/s")
    parser.add_argument("--connections", type=int, default=16, help="closed loop; pgbench -c")
    parser.add_argument("--open-connections", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--pool", type=int, default=0, help="distinct callbacks (default: enough)")
    parser.add_argument("--pgbench-scale", type=int, default=0, help="default: --connections")
    parser.add_argument(
        "--workers", type=int, default=2, help="serve --workers on PostgreSQL (SQLite: 1)"
    )
    parser.add_argument(
        "--inline-workers", type=int, default=4, help="serve --inline --workers on PostgreSQL"
    )
    args = parser.parse_args()
    print(machine(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="rgs-bench-server-"))
    pg: Postgres | None = None
    created: list[str] = []
    try:
        requests = work / "requests.bin"
        pool = args.pool or WARMUP + int(args.rate * args.seconds) + int(6000 * args.seconds)
        build_requests(requests, pool)
        sqlite = measure(f"sqlite:///{work / 'wallet.db'}", requests, args)
        pg = Postgres()
        scale = args.pgbench_scale or max(args.connections, 1)
        name, bench_url = pg.create("rgs_bench_pgbench")
        created.append(name)
        pgbench_init(bench_url, scale)
        tps = [pgbench_tps(bench_url, args.connections, args.seconds)]
        name, wallet_url = pg.create("rgs_bench_wallet")
        created.append(name)
        postgres = measure(wallet_url, requests, args)
        tps.append(pgbench_tps(bench_url, args.connections, args.seconds))
        name, inline_url = pg.create("rgs_bench_inline")
        created.append(name)
        inline_args = argparse.Namespace(**{**vars(args), "workers": args.inline_workers})
        inline = measure(inline_url, requests, inline_args, ("--inline",))
        tps.append(pgbench_tps(bench_url, args.connections, args.seconds))
        version = pg.version()
    finally:
        for name in created:
            if pg is not None:
                pg.drop(name)
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{version}; wallet server: uvicorn, SQLite 1 process, PostgreSQL {args.workers}"
        " worker processes (serve --workers) with a pool of 10 each; postgresql-inline:"
        f" serve --inline --workers {args.inline_workers}"
    )
    print(
        f"load: {pool:,} distinct pre-signed callbacks (bench/engine.py mix, {PLAYERS} players), "
        f"{args.seconds:g} s per load, a fresh live server and database per store"
    )
    print(
        f"{'store':<10} {'load':<18} {'callbacks/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'srv CPU':>7} {'us/cb':>8}   answers"
    )
    stores = (("sqlite", sqlite), ("postgresql", postgres), ("pg-inline", inline))
    for store, (at_rate, flat_out) in stores:
        print(row(store, f"open {args.rate:g}/s", at_rate))
        print(row(store, f"closed {args.connections} conns", flat_out))
    best = sum(tps) / len(tps)
    print(
        f"pgbench TPC-B-like, scale {scale}, -c {args.connections} -j 2 -T {args.seconds:g}: "
        f"{best:,.0f} tps (before, between and after the wallet's loads: "
        + ", ".join(f"{t:,.0f}" for t in tps)
        + ")"
    )
    for store, (at_rate, _) in stores:
        ok = at_rate["p99_ms"] < 50 and at_rate["rate"] >= 0.95 * args.rate
        print(
            f"target p99 < 50 ms at {args.rate:g}/s, {store}: p99 {at_rate['p99_ms']:.1f} ms at "
            f"{at_rate['rate']:,.0f}/s -> {'met' if ok else 'NOT met'}"
        )
    for store, (_, flat_out) in stores[1:]:
        ratio = flat_out["rate"] / best
        print(
            f"target postgresql callbacks/s >= 0.5 x pgbench tps, {store}: "
            f"{flat_out['rate']:,.0f} / {best:,.0f} = {ratio:.2f} -> "
            f"{'met' if ratio >= 0.5 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
