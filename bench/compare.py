"""Benchmark of ``rgs-shadow compare``: the diff engine against a naive pandas merge and DuckDB.

One command: ``python bench/compare.py [--n 10000000]`` (``--n 1000000`` for a quick
run).  It generates N decisions and a matching settlement CSV with 0.1 % planted
divergences (amount, missing on either side, refused-but-settled, slow), then,
each in a fresh process so peak memory is its own, runs

* the engine exactly as the CLI does (load, validate, diff),
* a naive baseline: ``pd.read_parquet`` + ``pd.read_csv``, a groupby of the
  decisions by transaction, an outer ``merge(indicator=True)`` and the same
  rules as boolean Series, and
* DuckDB running the same core diff in one SQL statement over the same two files
  (the practical limit; DuckDB is not a dependency of rgs-shadow: install it for
  the benchmark only, ``pip install duckdb``; without it that line is skipped),

and prints wall time, rows per second, peak RSS, the ratios, and whether every
planted divergence was found (and nothing else).

The naive merge runs once (a minute); the engine and DuckDB then run
``--rounds`` times each, alternating, and their medians are compared.  On a
virtual machine that hands freed memory back to its host after a few seconds,
a process that starts right after another one freed gigabytes gets warm pages
and the next one cold ones: alternating gives both the same neighbours.  The
generated files are flushed to disk first, so no contender pays for their
write-back.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# Run as ``python bench/compare.py`` this file would shadow the package it measures:
# take bench/ off the import path before importing it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from replay.decision_schema import DECISION_SCHEMA  # noqa: E402

PLANTS = (
    "AMOUNT_MISMATCH",
    "MISSING_IN_EXPORT",
    "MISSING_IN_WALLET",
    "STATUS_MISMATCH",
    "SLOW_RESPONSE",
)
T0 = 1_764_072_000_000_000


def generate(n: int, directory: Path) -> tuple[Path, Path, set[tuple[str, str]]]:
    """Write decisions.parquet and export.csv; returns the planted (kind, transaction id)."""
    i = np.arange(n, dtype=np.int64)
    txid = pc.binary_join_element_wise("t", pa.array(i).cast(pa.string()), "")
    event = np.where(i % 2 == 0, "bet", "win")
    amount = (i % 500 + 1) * 10
    planted = (i % 1000 == 500) & (i > 1000) & (i < n - 1000)
    kind = (i // 1000) % len(PLANTS)
    code = np.where(planted & (kind == 3), "INSUFFICIENT_FUNDS", "OK")
    latency = np.where(planted & (kind == 4), 4000.0, 20.0)
    in_wallet = ~(planted & (kind == 2))
    in_export = ~(planted & (kind == 1))
    export_amount = amount + np.where(planted & (kind == 0), 1, 0)
    cols: dict[str, Any] = {
        "capture_id": pc.binary_join_element_wise("c", pa.array(i).cast(pa.string()), ""),
        "aggregator": pa.array(np.full(n, "acme")),
        "event": pa.array(event),
        "transaction_id": txid,
        "player_id": pa.array((i % 5000).astype(str)),
        "session_id": pa.array((i % 5000).astype(str)),
        "round_id": pa.array((i // 2).astype(str)),
        "currency": pa.array(np.full(n, "EUR")),
        "amount_minor": pa.array(amount),
        "outcome": pa.array(np.where(code == "OK", "APPLIED", "REJECTED")),
        "code": pa.array(code),
        "http_status": pa.array(np.where(code == "OK", 200, 402).astype(np.int32)),
        "live_status": pa.array(np.where(code == "OK", 200, 402).astype(np.int32)),
        "live_code": pa.array(code),
        "mode": pa.array(np.full(n, "shadow")),
        "seq": pa.array(i),
        "captured_at": pa.array(T0 + i * 1000).cast(pa.timestamp("us", tz="UTC")),
        "latency_ms": pa.array(latency),
        "flags": pa.array(np.full(n, "[]")),
    }
    arrays = [cols.get(f.name, pa.nulls(n, f.type)).cast(f.type) for f in DECISION_SCHEMA]
    decisions = pa.Table.from_arrays(arrays, schema=DECISION_SCHEMA).filter(pa.array(in_wallet))
    dpath = directory / "decisions.parquet"
    pq.write_table(decisions, dpath, compression="zstd")
    ex = pa.array(export_amount)
    text = pc.binary_join_element_wise(
        pc.divide(ex, 100).cast(pa.string()),
        pc.utf8_lpad(pc.remainder(ex, 100).cast(pa.string()), 2, "0"),
        ".",
    )
    export = pa.table(
        {
            "transaction_id": txid,
            "round_id": cols["round_id"],
            "player_id": cols["player_id"],
            "session_id": cols["session_id"],
            "event": cols["event"],
            "amount": text,
            "currency": cols["currency"],
            "status": pa.array(np.full(n, "SETTLED")),
            "settled_at": pa.array(T0 + i * 1000 + 500).cast(pa.timestamp("us", tz="UTC")),
            "ref_transaction_id": pa.nulls(n, pa.string()),
        }
    ).filter(pa.array(in_export))
    epath = directory / "export.csv"
    pacsv.write_csv(export, epath)
    truth = {
        (PLANTS[k], f"t{j}")
        for j, k in zip(np.flatnonzero(planted).tolist(), kind[planted].tolist(), strict=True)
    }
    return dpath, epath, truth


def run_engine(dpath: Path, epath: Path) -> tuple[float, set[tuple[str, str]]]:
    """What ``rgs-shadow compare`` runs before its summary and files (``compare.run``)."""
    from compare.run import compare_files
    from wallet_core.config import WalletConfig

    config = WalletConfig(aggregators={})
    start = time.perf_counter()
    _, _, result = compare_files(dpath, epath, config)
    took = time.perf_counter() - start
    return took, {(d.kind.value, d.transaction_id or "") for d in result.divergences}


def run_naive(dpath: Path, epath: Path) -> tuple[float, set[tuple[str, str]]]:
    import pandas as pd

    start = time.perf_counter()
    dec = pd.read_parquet(dpath)
    exp = pd.read_csv(epath, dtype=str, keep_default_na=False)
    exp["amount_minor"] = exp["amount"].str.replace(".", "", regex=False).astype("int64")
    dec["moved"] = (dec["outcome"] == "APPLIED") & (dec["code"] == "OK")
    wallet = dec.groupby("transaction_id", sort=False).agg(
        w_amount=("amount_minor", "first"), moved=("moved", "sum"), ok=("moved", "any")
    )
    both = wallet.merge(
        exp.set_index("transaction_id"),
        how="outer",
        left_index=True,
        right_index=True,
        indicator=True,
    )
    found: set[tuple[str, str]] = set()
    rules = {
        "MISSING_IN_WALLET": both["_merge"] == "right_only",
        "MISSING_IN_EXPORT": (both["_merge"] == "left_only") & (both["moved"] > 0),
        "AMOUNT_MISMATCH": (both["_merge"] == "both") & (both["w_amount"] != both["amount_minor"]),
        "STATUS_MISMATCH": (both["_merge"] == "both")
        & (both["status"] == "SETTLED")
        & ~both["ok"].fillna(False).astype(bool),
        "DOUBLE_APPLIED": both["moved"] > 1,
    }
    for kind, rule in rules.items():
        found |= {(kind, t) for t in both.index[rule.fillna(False).astype(bool)]}
    found |= {("SLOW_RESPONSE", t) for t in dec.loc[dec["latency_ms"] >= 3000, "transaction_id"]}
    return time.perf_counter() - start, found


DUCKDB_SQL = """
WITH dec AS (
  SELECT transaction_id, amount_minor, latency_ms,
         coalesce(outcome = 'APPLIED' AND code = 'OK', false) AS moved
  FROM read_parquet($decisions)
),
w AS (
  SELECT transaction_id, first(amount_minor) AS w_amount,
         sum(moved::INTEGER) AS moved, bool_or(moved) AS ok
  FROM dec GROUP BY transaction_id
),
e AS (
  SELECT transaction_id, status, CAST(replace(amount, '.', '') AS BIGINT) AS amount_minor
  FROM read_csv($export, header = true, all_varchar = true)
),
b AS (
  SELECT coalesce(w.transaction_id, e.transaction_id) AS tx, w.w_amount, w.moved, w.ok,
         e.amount_minor, e.status, w.transaction_id IS NOT NULL AS in_w,
         e.transaction_id IS NOT NULL AS in_e
  FROM w FULL OUTER JOIN e ON w.transaction_id = e.transaction_id
)
SELECT 'MISSING_IN_WALLET' AS kind, tx FROM b WHERE NOT in_w
UNION ALL SELECT 'MISSING_IN_EXPORT', tx FROM b WHERE NOT in_e AND moved > 0
UNION ALL SELECT 'AMOUNT_MISMATCH', tx FROM b WHERE in_w AND in_e AND w_amount <> amount_minor
UNION ALL SELECT 'STATUS_MISMATCH', tx FROM b WHERE in_w AND in_e AND status = 'SETTLED' AND NOT ok
UNION ALL SELECT 'DOUBLE_APPLIED', tx FROM b WHERE moved > 1
UNION ALL SELECT 'SLOW_RESPONSE', transaction_id FROM dec WHERE latency_ms >= 3000
"""


def run_duckdb(dpath: Path, epath: Path) -> tuple[float, set[tuple[str, str]]]:
    """The same core rules as :func:`run_naive`, as one SQL statement (all cores)."""
    import duckdb

    start = time.perf_counter()
    con = duckdb.connect()
    rows = con.execute(DUCKDB_SQL, {"decisions": str(dpath), "export": str(epath)}).fetchall()
    con.close()
    return time.perf_counter() - start, {(str(k), str(t)) for k, t in rows}


def have_duckdb() -> bool:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


CONTENDERS = {"engine": run_engine, "naive": run_naive, "duckdb": run_duckdb}


def _child(name: str, dpath: str, epath: str, queue: Any) -> None:
    took, found = CONTENDERS[name](Path(dpath), Path(epath))
    queue.put((took, _peak_rss(), found))


def _peak_rss() -> int:
    """This process's peak RSS in bytes.

    ``VmHWM`` where there is one: ``ru_maxrss`` survives fork and exec on Linux, so a
    child would report the parent's peak (here: the generator's) when it is higher.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(name: str, dpath: Path, epath: Path) -> tuple[float, int, set[tuple[str, str]]]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(name, str(dpath), str(epath), queue))
    proc.start()
    while True:
        try:
            out: tuple[float, int, set[tuple[str, str]]] = queue.get(timeout=1)
            break
        except Exception:  # queue.Empty: is the child still alive?
            if not proc.is_alive():
                raise SystemExit(f"{name} run failed (exit {proc.exitcode})") from None
    proc.join()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="decisions to generate")
    parser.add_argument("--dir", type=Path, help="where to write the inputs (default: a temp dir)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="runs of the engine and of DuckDB, alternating"
    )
    args = parser.parse_args()
    duck = have_duckdb()
    if not duck:
        print("duckdb is not installed: `pip install duckdb` to measure the practical limit too")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        start = time.perf_counter()
        dpath, epath, truth = generate(args.n, Path(tmp))
        print(
            f"generated {args.n:,} decisions and their export with {len(truth):,} planted "
            f"divergences in {time.perf_counter() - start:.1f} s"
        )
        labels = {
            "engine": "compare engine",
            "naive": "naive pandas merge",
            "duckdb": "duckdb (SQL)",
        }
        os.sync()  # the files' write-back is not any contender's to pay
        results: dict[str, list[tuple[float, int]]] = {}
        order = ["naive"] + (["engine", "duckdb"] if duck else ["engine"]) * max(args.rounds, 1)
        for name in order:
            took, peak, found = measure(name, dpath, epath)
            results.setdefault(name, []).append((took, peak))
            missed = len(truth - found)
            print(
                f"{labels[name]:>20}: {took:6.2f} s, {args.n / took:>12,.0f} decisions/s, "
                f"peak RSS {peak / 2**30:.2f} GiB, planted found "
                f"{len(truth) - missed}/{len(truth)}, extra {len(found - truth)}",
                flush=True,
            )
    took_of = {name: statistics.median(t for t, _ in runs) for name, runs in results.items()}
    e_took = took_of["engine"]
    e_peak = max(p for _, p in results["engine"])
    print(
        f"engine median {e_took:.2f} s of {len(results['engine'])} runs"
        + (f"; DuckDB median {took_of['duckdb']:.2f} s" if duck else "")
    )
    print(f"speed-up over the naive merge: {took_of['naive'] / e_took:.2f}x (target >= 3)")
    if duck:
        print(f"engine time / DuckDB time: {e_took / took_of['duckdb']:.2f} (target <= 1.5)")
    print(f"engine peak memory (highest run): {e_peak / 2**30:.2f} GiB (target < 4)")
    print(
        f"machine: {platform.processor() or platform.machine()}, {mp.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


if __name__ == "__main__":
    main()
