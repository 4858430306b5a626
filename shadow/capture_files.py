"""Which files of a capture directory hold its data, without importing a Parquet reader.

Kept apart from :mod:`shadow.dataset` because that module needs
``pyarrow.dataset`` (which imports pandas, about 30 MB and 0.2 s a process),
while the replay reader and its workers only need the file list.  The list is
built explicitly:

* hidden (``.``) and ``_`` names are skipped: temp files being written, merge
  journals, and the ``_spool/`` directory;
* sources of an hourly merge whose merged file is already in place (a journal
  still names them) are skipped, so a reader never sees a row twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["capture_files"]


def _hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def capture_files(capture_dir: str | Path) -> list[Path]:
    """Every complete, current Parquet file of a capture directory, sorted."""
    root = Path(capture_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"capture directory {root} does not exist")
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        names = set(filenames)
        superseded: set[str] = set()
        for name in names:
            if name.startswith(".merge-") and name.endswith(".json"):
                superseded |= _merged_sources(Path(dirpath) / name, names)
        files.extend(
            Path(dirpath) / name
            for name in sorted(names)
            if name.endswith(".parquet") and not _hidden(name) and name not in superseded
        )
    return files


def _merged_sources(journal: Path, present: set[str]) -> set[str]:
    """The sources a merge journal retires, if its merged file is in place."""
    try:
        doc = json.loads(journal.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(doc, dict) or doc.get("target") not in present:
        return set()
    return {str(s) for s in doc.get("sources", [])}
