"""Benchmark of ``rgs-shadow compare``: the diff engine against a naive pandas merge.

One command: ``python bench/compare.py [--n 1000000]``.  It generates N decisions
and a matching settlement CSV with 0.1 % planted divergences (amount, missing on
either side, refused-but-settled, slow), then, each in a fresh process so peak
memory is its own, runs

* the engine exactly as the CLI does (load, validate, diff), and
* a naive baseline: ``pd.read_parquet`` + ``pd.read_csv``, a groupby of the
  decisions by transaction, an outer ``merge(indicator=True)`` and the same
  rules as boolean Series,

and prints wall time, rows per second, peak RSS, the ratio, and whether every
planted divergence was found (and nothing else).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
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
    from compare.diff import diff
    from compare.rows import load_decisions
    from compare.settlement import load_settlement
    from wallet_core.money import CurrencyTable

    start = time.perf_counter()
    result = diff(load_decisions(dpath), load_settlement(epath, CurrencyTable()), CurrencyTable())
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


def _child(name: str, dpath: str, epath: str, queue: Any) -> None:
    took, found = (run_engine if name == "engine" else run_naive)(Path(dpath), Path(epath))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put((took, peak, found))


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
    parser.add_argument("--n", type=int, default=1_000_000, help="decisions to generate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        dpath, epath, truth = generate(args.n, Path(tmp))
        print(
            f"generated {args.n:,} decisions and their export with {len(truth):,} planted "
            f"divergences in {time.perf_counter() - start:.1f} s"
        )
        e_took, e_peak, e_found = measure("engine", dpath, epath)
        n_took, n_peak, n_found = measure("naive", dpath, epath)
    for label, took, peak, found in (
        ("compare engine", e_took, e_peak, e_found),
        ("naive pandas merge", n_took, n_peak, n_found),
    ):
        missed = len(truth - found)
        extra = len(found - truth)
        print(
            f"{label:>20}: {took:6.2f} s, {args.n / took:>12,.0f} decisions/s, peak RSS "
            f"{peak / 2**30:.2f} GiB, planted found {len(truth) - missed}/{len(truth)}, "
            f"extra {extra}"
        )
    print(f"speed-up over the naive merge: {n_took / e_took:.2f}x")
    print(
        f"machine: {platform.processor() or platform.machine()}, {mp.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


if __name__ == "__main__":
    main()
