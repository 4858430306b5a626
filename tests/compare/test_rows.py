"""Loading a decision file: columns left undecoded still read as what the file holds;
per-row values of dictionary columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare.rows import UNUSED, by_value, load_decisions, spread, take_rows
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


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.sampled_from(["OK", "NO", "OKAY", ""])), max_size=8),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_spread_gives_what_the_arrow_take_gives(
    chunks: list[list[str | None]], encoded: bool
) -> None:
    arrays = [pa.array(c, pa.string()) for c in chunks]
    if encoded:  # dictionary chunks, some with null indices, as the Parquet reader makes them
        arrays = [a.dictionary_encode() for a in arrays]
    column = pa.chunked_array(arrays)
    for fn, fill, dtype in (
        (lambda v: pc.equal(v, "OK"), False, bool),
        (lambda v: pc.index_in(v, value_set=pa.array(["NO", "OK"])), -1, np.int8),
    ):
        want = pc.fill_null(by_value(column, fn), fill).to_numpy(zero_copy_only=False)
        got = spread(column, fn, fill, dtype)
        assert got.dtype == dtype and got.tolist() == np.asarray(want, dtype).tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.sampled_from(["a", "bb", "c"])), max_size=6),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
    st.data(),
)
def test_take_rows_gives_the_rows_asked_in_their_order(
    chunks: list[list[str | None]], encoded: bool, data: st.DataObject
) -> None:
    arrays = [pa.array(c, pa.string()) for c in chunks]
    if encoded:  # a dictionary per chunk, as each row group of a Parquet file has
        arrays = [a.dictionary_encode() for a in arrays]
    column = pa.chunked_array(arrays, arrays[0].type)
    n = sum(len(c) for c in chunks)
    rows = data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=10 if n else 0))
    got = take_rows(column, np.array(rows, np.int64))
    assert got.to_pylist() == [column[i].as_py() for i in rows]
