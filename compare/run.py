"""One comparison, start to finish: load both sides, diff, summarize, write the evidence.

``rgs-shadow compare`` and ``rgs-shadow demo`` both run exactly this, so the demo
cannot drift from the command people run.  The two files are read at the same
time: each load is partly single-threaded (checking and converting the export's
cells, assembling the decision table), and on two cores one load's
single-threaded stretches run beside the other's.
"""

from __future__ import annotations

import importlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from wallet_core.config import WalletConfig
from wallet_core.errors import ConfigError

from . import keykernels, rulekernels
from .columnmap import parse_column_map
from .diff import DiffResult, Wallet, diff, prepare_wallet
from .idcodes import load_kernels
from .memory import hand_back, reuse_freed_pages
from .options import CompareOptions, parse_compare_options
from .rows import load_decisions
from .settlement import Settlement, load_settlement
from .summary import build_summary
from .writer import write_evidence

__all__ = ["compare_files", "load_inputs", "run_compare"]


def load_inputs(
    decisions: Path, settlement: Path, config: WalletConfig
) -> tuple[pa.Table, Settlement, Wallet]:
    """The decision table, the export, and what the diff reads of the decisions alone
    (:func:`compare.diff.prepare_wallet`), made while the export's last steps, which
    use one core, still run.

    Errors come out in the order a sequential load would give them: the decision
    file's first, then the column map's, then the export's (a repeated transaction
    id is found by :func:`compare.diff.diff`, which must follow).
    """

    def export() -> Settlement:
        cmap = parse_column_map(config.sections.get("settlement"))
        return load_settlement(settlement, config.currencies, cmap, defer_id_check=True)

    with ThreadPoolExecutor(2, thread_name_prefix="load-export") as pool:
        pending = pool.submit(export)
        # The id hash's compiled loops, loaded while the files are read (prepare_wallet's
        # first call would otherwise wait for them).
        kernels = pool.submit(_load_kernels)
        # pyarrow imports pandas at its first conversion of a Python list (~0.2 s): here,
        # on the thread with time to spare, not the export's, the longer of the two.
        importlib.import_module("pandas")
        table = load_decisions(decisions)
        kernels.result()
        wallet = prepare_wallet(table, by_round=_by_round(config))
        return table, pending.result(), wallet


def _load_kernels() -> None:
    """The compiled loops the diff calls first, loaded from numba's cache."""
    load_kernels()
    keykernels.load()
    rulekernels.load()


def _by_round(config: WalletConfig) -> bool:
    """Whether the export is a per-round feed (its map's own error comes from the load)."""
    try:
        return parse_column_map(config.sections.get("settlement")).layout == "rounds"
    except ConfigError:
        return False


def compare_files(
    decisions: Path, settlement: Path, config: WalletConfig, opts: CompareOptions | None = None
) -> tuple[pa.Table, Settlement, DiffResult]:
    """Load both sides and diff them: the decision table, the export and the result."""
    with reuse_freed_pages():
        table, export, wallet = load_inputs(decisions, settlement, config)
        hand_back()
        return table, export, diff(table, export, config.currencies, opts, wallet)


def run_compare(
    decisions: Path, settlement: Path, out: Path, config: WalletConfig
) -> tuple[DiffResult, dict[str, Any]]:
    """Diff ``decisions`` against ``settlement`` and write ``out/``; returns the result and summary."""
    opts = parse_compare_options(config.sections.get("compare"))
    table, export, result = compare_files(decisions, settlement, config, opts)
    summary = build_summary(
        result,
        table,
        decisions_path=decisions,
        settlement_path=export.path,
        currencies=config.currencies,
        opts=opts,
    )
    write_evidence(out, result.divergences, summary)
    return result, summary
