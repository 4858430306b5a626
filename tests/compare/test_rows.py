"""Loading a decision file: columns left undecoded still read as what the file holds."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compare.rows import UNUSED, load_decisions
from compare.testing import Scenario
from replay.decision_schema import DECISION_SCHEMA


def _written(tmp_path: Path, table: pa.Table, *, statistics: bool = True) -> Path:
    path = tmp_path / "decisions.parquet"
    pq.write_table(table, path, write_statistics=statistics, row_group_size=4)
    return path


@pytest.mark.parametrize("statistics", [True, False])
def test_all_null_columns_load_as_nulls(tmp_path: Path, statistics: bool) -> None:
    scn = Scenario()
    scn.clean_day(rounds=3)
    table = scn.table()
    # A required column all null is still present (and null), not "missing".
    table = table.set_column(
        table.schema.get_field_index("player_id"),
        DECISION_SCHEMA.field("player_id"),
        pa.nulls(table.num_rows, pa.string()),
    )
    loaded = load_decisions(_written(tmp_path, table, statistics=statistics))
    assert loaded.num_rows == table.num_rows
    assert loaded.column("player_id").null_count == table.num_rows
    assert (
        loaded.column("ref_transaction_id").to_pylist()
        == table.column("ref_transaction_id").to_pylist()
    )
    for name in DECISION_SCHEMA.names:
        if name not in UNUSED:
            assert loaded.column(name).to_pylist() == table.column(name).to_pylist(), name
