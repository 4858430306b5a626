"""Callbacks per second through the full wallet core on SQLite, beside the storage limit.

Run:  python bench/engine.py [--live N] [--replay N]

For each durability mode it measures, in the same run and on the same disk:

* core: N signed callbacks (bets, wins, balances, refunds, settles over many
  players) through ``WalletCore.handle``: HMAC check, parse, idempotency, session,
  conditional debit, ledger, round, audit chain; and
* limit: N bare SQLite transactions that each do one INSERT and one UPDATE, with
  the same PRAGMAs: each committing on its own, and (replay durability) also
  with the commits grouped like the replay store groups them,

and prints the rates and their ratios (medians of alternating rounds, since the
machines are shared and noisy).  Timing thresholds never go in tests;
this is where speed is watched.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.store import SqliteStore
from wallet_core.testing import CallbackFactory

T0 = 1_790_000_000 * 1_000_000
GROUP = 10_000  # as the replay store groups (SqliteStore group_size)


def workload(n: int, players: int = 500, seed: int = 7) -> list[tuple[dict[str, str], bytes]]:
    """A realistic mix, pre-signed so signing is not timed (verifying is)."""
    rng = random.Random(seed)
    factory = CallbackFactory()
    calls: list[tuple[dict[str, str], bytes]] = []
    bets: list[tuple[int, str, str]] = []
    for i in range(n):
        p = rng.randrange(players)
        base = {"session_id": f"s{p}", "player_id": f"p{p}", "currency": "EUR"}
        roll = rng.random()
        round_id = f"r{p}-{i // 8}"
        if roll < 0.45:
            txid = f"b{i}"
            bets.append((p, txid, round_id))
            calls.append(
                factory.make("bet", **base, transaction_id=txid, amount="1.00", round_id=round_id)
            )
        elif roll < 0.80:
            calls.append(
                factory.make(
                    "win", **base, transaction_id=f"w{i}", amount="1.50", round_id=round_id
                )
            )
        elif roll < 0.90:
            calls.append(factory.make("balance", **base))
        elif roll < 0.95 and bets:
            bp, btx, bround = bets.pop(rng.randrange(len(bets)))
            calls.append(
                factory.make(
                    "refund",
                    session_id=f"s{bp}",
                    player_id=f"p{bp}",
                    currency="EUR",
                    transaction_id=f"f{i}",
                    amount="1.00",
                    round_id=bround,
                    ref_transaction_id=btx,
                )
            )
        else:
            calls.append(factory.make("settle", **base, transaction_id=f"e{i}", round_id=round_id))
    return calls


def run_core(
    path: Path, durability: str, calls: list[tuple[dict[str, str], bytes]], players: int = 500
) -> float:
    store = SqliteStore(path, durability=durability, group_size=GROUP)  # type: ignore[arg-type]
    config = WalletConfig.single()
    operator = OperatorApi(store, config)
    for p in range(players):
        operator.adjust(f"open-{p}", f"p{p}", "EUR", 1_000_000, T0)
    core = WalletCore(store, config, mode=Mode.SHADOW)
    handle = core.handle
    start = time.perf_counter()
    now = T0
    for headers, body in calls:
        now += 1000
        handle("default", headers, body, now)
    store.flush()
    elapsed = time.perf_counter() - start
    store.close()
    return len(calls) / elapsed


def run_limit(path: Path, durability: str, n: int, *, grouped: bool) -> float:
    """N bare transactions of one INSERT and one UPDATE, with the store's PRAGMAs.

    ``grouped`` commits every ``GROUP`` transactions (as replay durability does);
    otherwise every transaction commits on its own.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    x = conn.execute
    x("PRAGMA journal_mode=WAL")
    x("PRAGMA synchronous=" + ("FULL" if durability == "live" else "OFF"))
    if durability == "replay":
        x("PRAGMA locking_mode=EXCLUSIVE")
    x("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    x("CREATE TABLE entries (id INTEGER PRIMARY KEY, account INTEGER, amount INTEGER)")
    x("BEGIN")
    conn.executemany("INSERT INTO accounts VALUES (?, 1000000)", [(i,) for i in range(500)])
    x("COMMIT")
    start = time.perf_counter()
    in_group = 0
    for i in range(n):
        account = i % 500
        if not grouped or in_group == 0:
            x("BEGIN IMMEDIATE")
        x("INSERT INTO entries (account, amount) VALUES (?, ?)", (account, -100))
        x("UPDATE accounts SET balance = balance - ? WHERE id = ?", (100, account))
        in_group += 1
        if not grouped or in_group == GROUP:
            x("COMMIT")
            in_group = 0
    if in_group:
        x("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--live", type=int, default=2000, help="callbacks in live durability")
    parser.add_argument("--replay", type=int, default=40000, help="callbacks in replay durability")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians shown")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {_cpu()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for durability, n in (("live", args.live), ("replay", args.replay)):
            calls = workload(n)
            core, each, grouped = [], [], []
            for r in range(args.rounds):  # alternate so load from elsewhere hits both alike
                each.append(
                    run_limit(Path(tmp) / f"l{r}-{durability}.db", durability, n, grouped=False)
                )
                if durability == "replay":
                    grouped.append(
                        run_limit(Path(tmp) / f"g{r}-{durability}.db", durability, n, grouped=True)
                    )
                core.append(run_core(Path(tmp) / f"c{r}-{durability}.db", durability, calls))
            c, e = statistics.median(core), statistics.median(each)
            line = (
                f"{durability:>6}: core {c:>8,.0f} callbacks/s | limit, a commit per "
                f"transaction {e:>8,.0f} tx/s, ratio {c / e:.2f}"
            )
            if grouped:
                g = statistics.median(grouped)
                line += f" | limit, grouped commits {g:>8,.0f} tx/s, ratio {c / g:.2f}"
            print(line + f"   (n={n:,}, median of {args.rounds})")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
