"""compare.idcodes: codes hashed a bucket at a time are the codes of one hash pass."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare import idcodes
from compare.idcodes import BUCKETS, bucket_codes, bucket_of, encode_groups, group


def _reference(*arrays: pa.Array | pa.ChunkedArray) -> list[np.ndarray]:
    """One dictionary_encode over everything: the codes bucket_codes must agree with."""
    joined = pa.chunked_array(
        [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])],
        pa.string(),
    )
    codes = pc.fill_null(pc.dictionary_encode(joined.combine_chunks()).indices, -1).to_numpy()
    out, start = [], 0
    for a in arrays:
        out.append(codes[start : start + len(a)])
        start += len(a)
    return out


def _assert_same_partition(got: list[np.ndarray], keys: int, want: list[np.ndarray]) -> None:
    """Same nulls, and a one-to-one renaming of the reference codes."""
    flat_got, flat_want = np.concatenate(got), np.concatenate(want)
    assert ((flat_got == -1) == (flat_want == -1)).all()
    present = flat_want >= 0
    pairs = set(zip(flat_want[present].tolist(), flat_got[present].tolist(), strict=True))
    assert len(pairs) == len({w for w, _ in pairs}) == len({g for _, g in pairs}) == keys
    assert sorted({g for _, g in pairs}) == list(range(keys))


ids = st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(ids, min_size=1, max_size=4), st.integers(1, 2), st.integers(1, 16))
def test_codes_name_the_same_ids_as_one_dictionary(
    chunks: list[list[str | None]], threads: int, group: int
) -> None:
    wallet = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    export = pa.array([v for c in reversed(chunks) for v in c], pa.string())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(idcodes, "GROUP_ROWS", group)
        got, keys = bucket_codes(wallet, export, threads=threads)
    assert [len(c) for c in got] == [len(wallet), len(export)]
    want = _reference(wallet, export)
    _assert_same_partition(got, keys, want)
    # The same numbers too: the order of first appearance, which the diff's passes
    # over keys rely on to walk memory in order.
    assert [c.tolist() for c in got] == [c.tolist() for c in want]


def test_all_null_and_sliced_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idcodes, "GROUP_ROWS", 3)
    sliced = pa.array(["x", "a", "b", "a", None, "ccccc", "b"]).slice(1, 5)
    nulls = pa.chunked_array([pa.nulls(4, pa.string()), pa.array(["b", None, "zz"])])
    got, keys = bucket_codes(sliced, nulls, pa.nulls(3, pa.string()), pa.array([], pa.string()))
    assert [c.tolist() for c in got][2:] == [[-1, -1, -1], []]
    assert got[1][:4].tolist() == [-1, -1, -1, -1]
    _assert_same_partition(got[:2], keys, _reference(sliced, nulls))
    assert keys == 4  # a, b, ccccc, zz
    assert got[0].tolist() == [0, 1, 0, -1, 2] and got[1].tolist() == [-1] * 4 + [1, -1, 3]


def test_ids_that_end_alike_share_buckets_but_keep_their_codes() -> None:
    same_end = pa.array([f"{i}-bet" for i in range(500)] * 2)
    got, keys = bucket_codes(same_end)
    assert keys == 500
    assert (got[0][:500] == got[0][500:]).all()
    assert len(set(got[0][:500].tolist())) == 500


def test_bucket_of_depends_on_the_string_only() -> None:
    values = ["", "a", "ab", "abcd", "zzabcd", "t1234567", "t1234567"]
    alone = [int(bucket_of(pa.array([v]))[0]) for v in values]
    together = bucket_of(pa.array(["pad"] + values).slice(1)).tolist()
    assert alone == together
    assert together[-1] == together[-2]
    assert all(0 <= b < BUCKETS for b in together)


def test_encoding_consumes_the_groups_ids() -> None:
    wallet = group(pa.array(["a", "b", "a"]))
    export = group(pa.array(["b", "c"]), start=wallet.end)
    got, keys = encode_groups(wallet, export)
    assert keys == 3 and [c.tolist() for c in got] == [[0, 1, 0], [1, 2]]
    # The reordered copies are gone (their memory is what the renumbering reuses) ...
    assert all(g.strings is None for part in (wallet, export) for g in part.groups)
    # ... so a second encoding of the same parts is refused, not wrong.
    with pytest.raises(ValueError, match="encoded already"):
        encode_groups(wallet, export)
