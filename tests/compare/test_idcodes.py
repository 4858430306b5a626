"""compare.idcodes: codes numbered a partition at a time are the codes of one hash pass."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compare import idkernels
from compare.idcodes import PARTITIONS, bucket_codes, encode_groups, group


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


# Short ids, ids of 7, 8 and 15, 16 bytes (where the key's width changes), NUL bytes
# (which the zero padding must not confuse with shorter ids), and a long one.
ids = st.lists(
    st.one_of(
        st.none(),
        st.text(max_size=6),
        st.text(alphabet="ab\x00", min_size=6, max_size=17),
        st.sampled_from(["x" * 247, "x" * 248, "x" * 300]),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(st.lists(ids, min_size=1, max_size=4), st.integers(1, 2), st.booleans())
def test_codes_name_the_same_ids_as_one_dictionary(
    chunks: list[list[str | None]], threads: int, apart: bool
) -> None:
    wallet = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    export = pa.array([v for c in reversed(chunks) for v in c], pa.string())
    if apart:  # grouped one side at a time, as the diff does
        first = group(wallet, threads=threads)
        got, keys = encode_groups(
            first, group(export, start=first.end, threads=threads), threads=threads
        )
    else:
        got, keys = bucket_codes(wallet, export, threads=threads)
    assert [len(c) for c in got] == [len(wallet), len(export)]
    want = _reference(wallet, export)
    _assert_same_partition(got, keys, want)
    # The same numbers too: the order of first appearance, which the diff's passes
    # over keys rely on to walk memory in order.
    assert [c.tolist() for c in got] == [c.tolist() for c in want]


def test_all_null_and_sliced_inputs() -> None:
    sliced = pa.array(["x", "a", "b", "a", None, "ccccc", "b"]).slice(1, 5)
    nulls = pa.chunked_array([pa.nulls(4, pa.string()), pa.array(["b", None, "zz"])])
    got, keys = bucket_codes(sliced, nulls, pa.nulls(3, pa.string()), pa.array([], pa.string()))
    assert [c.tolist() for c in got][2:] == [[-1, -1, -1], []]
    assert got[1][:4].tolist() == [-1, -1, -1, -1]
    _assert_same_partition(got[:2], keys, _reference(sliced, nulls))
    assert keys == 4  # a, b, ccccc, zz
    assert got[0].tolist() == [0, 1, 0, -1, 2] and got[1].tolist() == [-1] * 4 + [1, -1, 3]


def test_ids_seen_again_keep_their_first_codes() -> None:
    same = pa.array([f"{i}-bet" for i in range(5000)] * 2)
    got, keys = bucket_codes(same)
    assert keys == 5000
    assert got[0][:5000].tolist() == list(range(5000)) and (got[0][:5000] == got[0][5000:]).all()


def test_a_side_with_longer_ids_rewrites_the_other() -> None:
    wallet = group(pa.array(["a", "bb", "a"]))
    export = group(pa.array(["bb", "c" * 20, "a"]), start=wallet.end)
    assert wallet.words is not None and wallet.words.shape[1] == 1
    got, keys = encode_groups(wallet, export)
    assert keys == 3 and [c.tolist() for c in got] == [[0, 1, 0], [1, 2, 0]]


def test_large_strings_and_empty_inputs() -> None:
    large = pa.array(["q", "", "q", None], pa.large_string())
    got, keys = bucket_codes(large, pa.array([], pa.string()), pa.array([""]))
    assert keys == 2 and [c.tolist() for c in got] == [[0, 1, 0, -1], [], [1]]
    assert bucket_codes() == ([], 0)
    none, keys = bucket_codes(pa.nulls(3, pa.string()))
    assert keys == 0 and none[0].tolist() == [-1, -1, -1]
    assert PARTITIONS == 2**idkernels.PARTITION_BITS


def test_encoding_consumes_the_groups_ids() -> None:
    wallet = group(pa.array(["a", "b", "a"]))
    export = group(pa.array(["b", "c"]), start=wallet.end)
    got, keys = encode_groups(wallet, export)
    assert keys == 3 and [c.tolist() for c in got] == [[0, 1, 0], [1, 2]]
    # The key words are gone (their memory is what the arrays made next reuse) ...
    assert wallet.words is None and export.words is None
    # ... so a second encoding of the same parts is refused, not wrong.
    with pytest.raises(ValueError, match="encoded already"):
        encode_groups(wallet, export)


def test_a_nul_byte_on_either_side_puts_the_length_in_the_keys() -> None:
    # Zero padded, "a" and "a\0" would be the same key: the length must be in it.
    for wallet_ids, export_ids in ((["a", "a\0"], ["a\0\0", "a"]), (["a", "b"], ["a\0", "b"])):
        wallet = group(pa.array(wallet_ids))
        export = group(pa.array(export_ids), start=wallet.end)
        got, keys = encode_groups(wallet, export)
        want = _reference(pa.array(wallet_ids), pa.array(export_ids))
        assert [c.tolist() for c in got] == [c.tolist() for c in want]
        assert keys == len(set(wallet_ids) | set(export_ids))
