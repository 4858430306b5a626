"""Reading a capture directory: always through the one explicit capture schema.

Why not ``pyarrow.dataset.dataset(dir)`` alone: without a schema, pyarrow takes
the first file's schema, so a column added later silently disappears, and
discovery would also pick up files that are not (yet) part of the data.  Here
the file list is built explicitly (:func:`shadow.capture_files.capture_files`).

Partition columns ``date`` (``YYYY-MM-DD``) and ``hour`` (``HH``) come back as
plain strings.  Public API: :func:`capture_files`, :func:`open_captures`,
:func:`read_captures`, :func:`read_captures_pandas`, :data:`DATASET_SCHEMA`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import pyarrow as pa
import pyarrow.dataset as ds

from .capture_files import capture_files
from .capture_schema import CAPTURE_SCHEMA, PARTITIONING_SCHEMA

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATASET_SCHEMA",
    "capture_files",
    "open_captures",
    "read_captures",
    "read_captures_pandas",
]

#: The capture columns followed by the partition columns ``date`` and ``hour``.
DATASET_SCHEMA = pa.schema(
    list(CAPTURE_SCHEMA) + list(PARTITIONING_SCHEMA), metadata=CAPTURE_SCHEMA.metadata
)
_PARTITIONING = ds.partitioning(PARTITIONING_SCHEMA, flavor="hive")


def open_captures(capture_dir: str | Path) -> ds.Dataset:
    """A :class:`pyarrow.dataset.Dataset` of the captures, in :data:`DATASET_SCHEMA`.

    Files written with fewer columns read with the missing ones as nulls.  An
    empty directory gives an empty dataset, not an error.
    """
    root = Path(capture_dir)
    files = [str(p) for p in capture_files(root)]
    return ds.dataset(
        files,
        schema=DATASET_SCHEMA,
        format="parquet",
        partitioning=_PARTITIONING,
        partition_base_dir=str(root),
    )


def read_captures(
    capture_dir: str | Path,
    columns: list[str] | None = None,
    filter: ds.Expression | None = None,  # noqa: A002 - pyarrow's own name
) -> pa.Table:
    """The captures as one table, oldest first (by ``captured_at``, then ``capture_id``)."""
    table = open_captures(capture_dir).to_table(filter=filter)
    if table.num_rows:
        table = table.sort_by([("captured_at", "ascending"), ("capture_id", "ascending")])
    return table.select(columns) if columns is not None else table


def read_captures_pandas(capture_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """:func:`read_captures` as a pandas DataFrame (bodies as ``bytes``, times tz-aware UTC)."""
    return cast("pd.DataFrame", read_captures(capture_dir, columns).to_pandas())
