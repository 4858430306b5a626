"""Replay speed and memory on a large capture, beside the wallet core's and a raw load's.

    /work/venv/bin/python bench/replay.py [--n 1000000] [--target-n 10000] [--rounds 2]

1. Generates a capture of ``--n`` callbacks (default 1,000,000) spread over
   ``--hours`` hour partitions: the mix of ``bench/engine.py`` (45 % bets, 35 % wins,
   10 % balances, 5 % refunds, 5 % settles, 500 players), signed, with *synthesized*
   live answers from a small balance model (OK with the balance after the callback;
   ``ROUND_CLOSED`` for a bet in a settled round), not from a real wallet: fast, and
   plausible enough for replay's bootstrap and decision writing.
2. In-process replay (``run_replay``, the ``rgs-shadow replay`` path: reader,
   bootstrap pre-pass, wallet core in replay durability, decision file) in a child
   process: callbacks/s and the child's peak RSS (``wait4``); then the same with
   ``--jobs`` (default: the machine's cores) worker processes.  Beside it, the wallet
   core's own figure, ``bench.engine.run_core`` in replay durability on its own
   workload, measured before and after the replay in this run.  Targets: at least
   0.8 of the engine's figure; peak memory under 500 MB.
3. ``--target`` replay of the first ``--target-n`` callbacks against a fresh local
   ``rgs-shadow serve --mode shadow`` (SQLite, opening balances by ``--snapshot``),
   beside wrk (``apt-get install wrk``) sending the same signed callbacks, each once,
   through as many keep-alive connections to another fresh server, alternating.
   Target: replay at least 0.7 of wrk.

Everything runs on 127.0.0.1 and stops by itself; scratch files are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]  # run as a script: the bench and tests packages by their names

from bench.engine import run_core, workload  # noqa: E402
from bench.server import machine  # noqa: E402
from shadow.capture_record import (  # noqa: E402
    CaptureRecord,
    hour_key,
    partition_of,
    records_to_table,
)
from tests._server import Server, snapshot_file  # noqa: E402
from wallet_core.testing import CallbackFactory  # noqa: E402

PLAYERS = 500
WRK_POOL_FACTOR = 5
OPENING = 1_000_000  # minor units, every player
T0 = 1_795_000_000 * 1_000_000 - (1_795_000_000 * 1_000_000) % 3_600_000_000  # an hour's start


# -- the capture ----------------------------------------------------------------------


def _money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def callbacks(
    n: int, seed: int = 7
) -> Iterator[tuple[int, str, str | None, dict[str, str], bytes]]:
    """``(player, event, transaction_id, headers, body)`` in bench/engine.py's mix.

    As ``bench.engine.workload`` draws them, but streamed, and a refund takes its bet
    by swap-remove (``list.pop(i)`` from the middle is quadratic at a million).
    """
    rng = random.Random(seed)
    factory = CallbackFactory()
    bets: list[tuple[int, str, str]] = []
    for i in range(n):
        p = rng.randrange(PLAYERS)
        base = {"session_id": f"s{p}", "player_id": f"p{p}", "currency": "EUR"}
        roll = rng.random()
        round_id = f"r{p}-{i // 8}"
        if roll < 0.45:
            txid = f"b{i}"
            bets.append((p, txid, round_id))
            h, b = factory.make(
                "bet", **base, transaction_id=txid, amount="1.00", round_id=round_id
            )
            yield p, "bet", txid, h, b
        elif roll < 0.80:
            txid = f"w{i}"
            h, b = factory.make(
                "win", **base, transaction_id=txid, amount="1.50", round_id=round_id
            )
            yield p, "win", txid, h, b
        elif roll < 0.90:
            h, b = factory.make("balance", **base)
            yield p, "balance", None, h, b
        elif roll < 0.95 and bets:
            j = rng.randrange(len(bets))
            bets[j], bets[-1] = bets[-1], bets[j]
            bp, btx, bround = bets.pop()
            txid = f"f{i}"
            h, b = factory.make(
                "refund",
                session_id=f"s{bp}",
                player_id=f"p{bp}",
                currency="EUR",
                transaction_id=txid,
                amount="1.00",
                round_id=bround,
                ref_transaction_id=btx,
            )
            yield bp, "refund", txid, h, b
        else:
            txid = f"e{i}"
            h, b = factory.make("settle", **base, transaction_id=txid, round_id=round_id)
            yield p, "settle", txid, h, b


class LiveModel:
    """What a correct live wallet would have answered, roughly: enough for a capture."""

    def __init__(self) -> None:
        self.balance = [OPENING] * PLAYERS
        self.closed: set[str] = set()
        self.accepted_bets: set[str] = set()

    def answer(self, p: int, event: str, txid: str | None, body: bytes) -> tuple[int, bytes]:
        doc = json.loads(body)
        if event == "bet":
            if doc["round_id"] in self.closed or self.balance[p] < 100:
                code = "ROUND_CLOSED" if doc["round_id"] in self.closed else "INSUFFICIENT_FUNDS"
                status = 409 if code == "ROUND_CLOSED" else 402
                error = {"status": "ERROR", "code": code, "message": code.lower()}
                error["balance"] = _money(self.balance[p])
                return status, json.dumps(error, separators=(",", ":")).encode()
            self.balance[p] -= 100
            self.accepted_bets.add(txid or "")
        elif event == "win":
            self.balance[p] += 150
        elif event == "refund" and doc["ref_transaction_id"] in self.accepted_bets:
            self.accepted_bets.discard(doc["ref_transaction_id"])
            self.balance[p] += 100
        elif event == "settle":
            self.closed.add(doc["round_id"])
        ok: dict[str, str] = {"status": "OK", "balance": _money(self.balance[p]), "currency": "EUR"}
        if txid:
            ok["transaction_id"] = txid
        return 200, json.dumps(ok, separators=(",", ":")).encode()


def write_capture(capture_dir: Path, n: int, hours: int) -> None:
    """``n`` callbacks over ``hours`` hour partitions, one Parquet file per hour."""
    step = max(1, hours * 3_600_000_000 // max(n, 1))
    model = LiveModel()
    batch: list[CaptureRecord] = []
    hour = hour_key(T0)
    answer_headers = (("content-type", "application/json"),)

    def flush() -> None:
        if batch:
            date, hh = partition_of(hour)
            folder = capture_dir / f"date={date}" / f"hour={hh}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(records_to_table(batch), folder / "part-0.parquet", compression="zstd")
            batch.clear()

    for i, (p, event, txid, headers, body) in enumerate(callbacks(n)):
        at = T0 + i * step
        if hour_key(at) != hour:
            flush()
            hour = hour_key(at)
        status, answer = model.answer(p, event, txid, body)
        batch.append(
            CaptureRecord(
                f"c{i:09d}",
                at,
                "127.0.0.1:5000",
                "POST",
                "/rgs/default",
                "default",
                tuple(headers.items()),
                body,
                status,
                answer_headers,
                answer,
                2.0,
                None,
                txid,
                event,
                False,
                len(body),
                len(answer),
                "bench",
            )
        )
    flush()


# -- replay in a child process --------------------------------------------------------


def child_replay(
    capture: Path, out: Path, target: str | None, concurrency: int, jobs: int = 1
) -> None:
    from replay.run import ReplayOptions, run_replay
    from wallet_core import WalletConfig

    options = ReplayOptions(
        capture_dir=capture,
        out=out,
        config=WalletConfig.single(),
        target=target,
        concurrency=concurrency,
        jobs=jobs,
    )
    cpu = time.process_time()
    summary = run_replay(options)
    cpu = time.process_time() - cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "callbacks": summary.callbacks,
                "elapsed_s": summary.elapsed_s,
                "rate": summary.rate,
                "outcomes": dict(summary.outcomes),
                "codes": dict(summary.codes.most_common(4)),
                "openings": summary.openings,
                "cpu_s": cpu,
                "workers_cpu_s": workers.ru_utime + workers.ru_stime,
            }
        ),
        flush=True,
    )


def replay_in_child(
    capture: Path, out: Path, target: str | None = None, concurrency: int = 32, jobs: int = 1
) -> dict[str, Any]:
    """Run :func:`child_replay` in a fresh process; adds its memory peaks in bytes.

    ``peak_rss`` is the child's own (``wait4``); with ``jobs`` > 1 the replay's
    workers are the child's children, and ``peak_pss``/``peak_rss_sum`` (sampled)
    cover the child and all of them at the same moment.
    """
    args = [sys.executable, __file__, "--child-replay", str(capture), "--child-out", str(out)]
    args += ["--jobs", str(jobs)]
    if target:
        args += ["--child-target", target, "--connections", str(concurrency)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    sampler = PssSampler(proc.pid)
    sampler.start()
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    sampler.stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench: the replay child failed with {proc.returncode}")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    result["peak_rss"] = usage.ru_maxrss * 1024  # kilobytes on Linux
    result["peak_pss"] = sampler.peak
    result["peak_rss_sum"] = sampler.peak_rss
    return result


class PssSampler(threading.Thread):
    """Peaks, over samples every 0.1 s, of the PSS and RSS sums of a process and its descendants.

    PSS (proportional set size) counts a page shared by k processes as 1/k in each,
    so a sum over processes is the memory they hold together; a sum of RSS counts
    Arrow's and Python's shared libraries once in every worker (an upper bound).
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.peak_rss = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            sizes = [_sizes(p) for p in _tree(self.pid)]
            self.peak = max(self.peak, sum(pss for pss, _ in sizes))
            self.peak_rss = max(self.peak_rss, sum(rss for _, rss in sizes))


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            try:
                pids += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
        i += 1
    return pids


def _sizes(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes; zeros if it has just ended."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # ended between the listing and the read
        return 0, 0
    pss = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    rss = re.search(r"^Rss:\s+(\d+) kB", text, re.M)
    return (int(pss.group(1)) * 1024 if pss else 0), (int(rss.group(1)) * 1024 if rss else 0)


def engine_rate(work: Path, calls: list[tuple[dict[str, str], bytes]], tag: str) -> float:
    return run_core(work / f"engine-{tag}.db", "replay", calls)


# -- --target against a server, beside wrk --------------------------------------------

_WRK_SCRIPT = r"""
-- Each thread sends every nth line of the pool once (n = threads): all distinct callbacks.
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local pool = {}
  for line in io.lines(args[1]) do
    local sig, body = line:match("^([^\t]*)\t(.*)$")
    table.insert(pool, wrk.format("POST", "/rgs/default",
      {["content-type"] = "application/json", ["x-rgs-signature"] = sig}, body))
  end
  mine = {}
  local n = tonumber(args[2])
  for i = id + 1, #pool, n do table.insert(mine, pool[i]) end
  sent = 0
  wrapped = 0
end
function request()
  sent = sent + 1
  if sent > #mine then sent = 1; wrapped = wrapped + 1 end
  return mine[sent]
end
function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do w = w + t:get("wrapped") end
  io.write(string.format("WRAPPED %d\n", w))
end
"""


def wrk_pool(capture: Path, path: Path) -> int:
    """The capture's requests as ``signature<TAB>body`` lines, in captured order."""
    table = pq.read_table(capture, columns=["captured_at", "request_headers", "request_body"])
    table = table.sort_by("captured_at")
    lines = []
    for headers, body in zip(
        table.column("request_headers").to_pylist(),
        table.column("request_body").to_pylist(),
        strict=True,
    ):
        sig = json.loads(headers)["x-rgs-signature"]
        lines.append(f"{sig}\t{body.decode()}\n")
    path.write_text("".join(lines))
    return len(lines)


def wrk_rate(url: str, pool: Path, script: Path, connections: int, seconds: float) -> float:
    threads = 2
    done = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s"]
        + ["-s", str(script), url + "/rgs/default", "--", str(pool), str(threads)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    wrapped = re.search(r"WRAPPED (\d+)", done.stdout)
    if not match:
        raise SystemExit(f"bench: cannot read wrk's rate:\n{done.stdout}\n{done.stderr}")
    if wrapped and int(wrapped.group(1)):
        print("  (wrk went through its pool: repeats were sent; raise --target-n)", flush=True)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    if non2xx:
        print(f"  (wrk: {non2xx.group(1)} non-2xx answers)", flush=True)
    return float(match.group(1))


def target_runs(
    work: Path, n: int, rounds: int, connections: int
) -> tuple[list[float], list[float]]:
    capture = work / "target-capture"
    write_capture(capture, n, hours=1)
    # wrk runs for a fixed time: give it a longer stream of the same mix so it never repeats.
    write_capture(work / "wrk-capture", WRK_POOL_FACTOR * n, hours=1)
    snapshot = snapshot_file(
        work / "opening.csv", [(f"p{p}", "EUR", _money(OPENING)) for p in range(PLAYERS)]
    )
    pool = work / "wrk-pool.tsv"
    wrk_pool(work / "wrk-capture", pool)
    script = work / "pool.lua"
    script.write_text(_WRK_SCRIPT)
    replays, wrks = [], []
    for r in range(rounds):
        db = f"sqlite:///{work / f'target-{r}.db'}"
        with Server(db, "shadow", "--snapshot", str(snapshot)) as server:
            result = replay_in_child(capture, work / f"target-{r}.parquet", server.url, connections)
        replays.append(result["rate"])
        # wrk for about as long as the replay took, so both see the same server state.
        seconds = max(2.0, min(10.0, result["elapsed_s"]))
        with Server(
            f"sqlite:///{work / f'wrk-{r}.db'}", "shadow", "--snapshot", str(snapshot)
        ) as s:
            wrks.append(wrk_rate(s.url, pool, script, connections, seconds))
        print(
            f"  round {r + 1}: --target replay {replays[-1]:,.0f} callbacks/s "
            f"({result['callbacks']:,} in {result['elapsed_s']:.1f} s, replay CPU "
            f"{result['cpu_s'] / result['elapsed_s']:.0%} of a core), wrk {wrks[-1]:,.0f} req/s",
            flush=True,
        )
    return replays, wrks


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="callbacks in the capture")
    parser.add_argument(
        "--hours", type=int, default=0, help="hour partitions they span (default: n / 40,000, 1-24)"
    )
    parser.add_argument("--engine-n", type=int, default=40_000, help="bench/engine.py workload")
    parser.add_argument("--target-n", type=int, default=10_000, help="callbacks for --target")
    parser.add_argument("--rounds", type=int, default=2, help="--target/wrk alternations")
    parser.add_argument("--connections", type=int, default=32, help="replay concurrency, wrk -c")
    parser.add_argument("--skip-target", action="store_true", help="in-process part only")
    parser.add_argument("--child-replay", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-target", help=argparse.SUPPRESS)
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="replay --jobs for the split run (default 2: the memory target is for two "
        "processes; each more worker holds about 170 MB more at 1,000,000 callbacks)",
    )
    args = parser.parse_args()
    if args.child_replay:
        child_replay(
            args.child_replay, args.child_out, args.child_target, args.connections, args.jobs
        )
        return
    if not args.skip_target and shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (apt-get install -y wrk), or --skip-target")

    # About 40,000 callbacks an hour: each player every ~45 s, well inside the session timeout.
    args.hours = args.hours or max(1, min(24, round(args.n / 40_000)))
    print(machine(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="rgs-bench-replay-"))
    try:
        capture = work / "capture"
        start = time.perf_counter()
        write_capture(capture, args.n, args.hours)
        size = sum(f.stat().st_size for f in capture.rglob("*.parquet"))
        print(
            f"capture: {args.n:,} callbacks over {args.hours} hour partitions, "
            f"{size / 1e6:,.0f} MB, generated in {time.perf_counter() - start:.0f} s "
            "(live answers synthesized by a balance model)",
            flush=True,
        )
        calls = workload(args.engine_n)
        engine = [engine_rate(work, calls, "before")]
        runs = [(1, replay_in_child(capture, work / "decisions.parquet"))]
        if args.jobs > 1:
            split = replay_in_child(capture, work / "decisions-jobs.parquet", jobs=args.jobs)
            runs.append((args.jobs, split))
        engine.append(engine_rate(work, calls, "after"))
        core = statistics.mean(engine)
        print(
            f"engine (bench/engine.py run_core, replay durability, n={args.engine_n:,}): "
            f"{core:,.0f} callbacks/s (before {engine[0]:,.0f}, after {engine[1]:,.0f})"
        )
        for jobs, inproc in runs:
            pss_mb = inproc["peak_pss"] / 1e6
            label = "in-process replay" + (f" --jobs {jobs}" if jobs > 1 else " (one process)")
            cpu = inproc["cpu_s"] + inproc["workers_cpu_s"]
            if jobs == 1:  # exact, from wait4; the memory judged is the RSS
                rss_mb = inproc["peak_rss"] / 1e6
                rss = f"peak RSS {rss_mb:,.0f} MB"
                judged, judged_mb = "RSS", rss_mb
            else:  # workers share their libraries: the memory judged is the PSS sum
                rss_mb = inproc["peak_rss_sum"] / 1e6
                rss = f"peak of the RSS sum {rss_mb:,.0f} MB (shared pages counted in each)"
                judged, judged_mb = "PSS", pss_mb
            print(
                f"{label}: {inproc['rate']:,.0f} callbacks/s ({inproc['callbacks']:,} in "
                f"{inproc['elapsed_s']:.1f} s, CPU {cpu:.0f} s, outcomes {inproc['outcomes']}), "
                f"{rss}, peak PSS of all its processes {pss_mb:,.0f} MB (sampled every 0.1 s)"
            )
            ratio = inproc["rate"] / core
            print(
                f"  target in-process >= 0.8 x engine: {ratio:.2f} -> "
                f"{'met' if ratio >= 0.8 else 'NOT met'}; peak memory < 500 MB: {judged} "
                f"{judged_mb:,.0f} MB -> {'met' if judged_mb < 500 else 'NOT met'}",
                flush=True,
            )
        if args.skip_target:
            return
        print(
            f"--target: {args.target_n:,} callbacks, {args.connections} connections, "
            "fresh rgs-shadow serve --mode shadow on SQLite per run",
            flush=True,
        )
        replays, wrks = target_runs(work, args.target_n, args.rounds, args.connections)
        rep, raw = statistics.median(replays), statistics.median(wrks)
        print(
            f"target --target >= 0.7 x wrk: {rep:,.0f} / {raw:,.0f} = {rep / raw:.2f} -> "
            f"{'met' if rep / raw >= 0.7 else 'NOT met'} (medians of {args.rounds})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
