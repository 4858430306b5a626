"""One comparison, start to finish: load both sides, diff, summarize, write the evidence.

``rgs-shadow compare`` and ``rgs-shadow demo`` both run exactly this, so the demo
cannot drift from the command people run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wallet_core.config import WalletConfig

from .columnmap import parse_column_map
from .diff import DiffResult, diff
from .options import parse_compare_options
from .rows import load_decisions
from .settlement import load_settlement
from .summary import build_summary
from .writer import write_evidence

__all__ = ["run_compare"]


def run_compare(
    decisions: Path, settlement: Path, out: Path, config: WalletConfig
) -> tuple[DiffResult, dict[str, Any]]:
    """Diff ``decisions`` against ``settlement`` and write ``out/``; returns the result and summary."""
    opts = parse_compare_options(config.sections.get("compare"))
    table = load_decisions(decisions)
    export = load_settlement(
        settlement, config.currencies, parse_column_map(config.sections.get("settlement"))
    )
    result = diff(table, export, config.currencies, opts)
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
