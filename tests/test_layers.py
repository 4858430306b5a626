"""The import arrows of DESIGN.md point one way (the layer check).

Parses every module of each package and refuses imports across layers that the
design does not allow, and third-party imports that belong to another layer
(sqlite3/psycopg outside the stores, mitmproxy outside shadow, rich outside
reports and the CLI).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"wallet_core", "shadow", "replay", "compare", "reports"}
ALLOWED = {
    "wallet_core": set(),
    "shadow": {"wallet_core", "replay", "compare", "reports"},  # the CLI imports everything
    "replay": {"wallet_core", "shadow"},
    "compare": {"wallet_core", "replay"},
    "reports": {"wallet_core", "compare", "replay", "shadow"},
}
CLI_ONLY = {"replay", "compare", "reports"}
THIRD_PARTY = {
    "sqlite3": lambda mod: mod.startswith("wallet_core.store."),
    "psycopg": lambda mod: mod.startswith("wallet_core.store."),
    "psycopg_pool": lambda mod: mod.startswith("wallet_core.store."),
    "mitmproxy": lambda mod: mod.startswith("shadow."),
    "rich": lambda mod: mod.startswith(("reports.", "shadow.cli")),
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in sorted(OURS):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            found.append((".".join(rel.parts), path))
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_imports_follow_the_layers(module: str, path: Path) -> None:
    package = module.split(".")[0]
    for name in imported(path):
        top = name.split(".")[0]
        if top in OURS and top != package:
            allowed = ALLOWED[package]
            if package == "shadow" and top in CLI_ONLY:
                assert module.startswith("shadow.cli"), f"{module} imports {name}"
            assert top in allowed, f"{module} may not import {name}"
        if top in THIRD_PARTY:
            assert THIRD_PARTY[top](module), f"{module} may not import {top}"
