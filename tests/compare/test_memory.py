"""The heap-reuse block around a comparison: transparent to what runs inside it."""

from __future__ import annotations

import numpy as np
import pytest

from compare.memory import huge_pages, reuse_freed_pages


def test_arrays_inside_and_after_the_block() -> None:
    with reuse_freed_pages():
        for _ in range(3):
            big = np.ones(8 * 2**20 // 8)  # above glibc's default mmap threshold
            assert big.sum() == len(big)
            del big
    assert np.ones(8 * 2**20 // 8).sum() == 2**20


def test_an_error_inside_the_block_propagates() -> None:
    with pytest.raises(ValueError, match="boom"), reuse_freed_pages():
        raise ValueError("boom")


def test_numpy_stops_advising_huge_pages_inside_the_block_only() -> None:
    before = huge_pages(True)
    try:
        with reuse_freed_pages():
            assert huge_pages(False) is False  # off inside: the block switched it off
        assert huge_pages(True) is True  # and back on after
    finally:
        huge_pages(before)
