"""The replay buffer's key filter: never a false "absent", rarely a false "maybe"."""

from __future__ import annotations

from wallet_core.store.keyfilter import KeyFilter


def test_every_added_key_is_found() -> None:
    keys = [("default", f"t{i}") for i in range(20_000)]
    known = KeyFilter(keys, capacity=5_000)  # overfull on purpose: still no false "absent"
    assert all(key in known for key in keys)
    assert known.full


def test_false_hits_stay_rare_up_to_capacity() -> None:
    known = KeyFilter(capacity=50_000)
    for i in range(known.capacity):
        known.add(("default", f"t{i}"))
    assert not known.full
    strangers = [("default", f"x{i}") for i in range(50_000)]
    hits = sum(key in known for key in strangers)
    assert hits < 0.02 * len(strangers)  # designed for about 0.5 %


def test_an_empty_filter_finds_nothing() -> None:
    known = KeyFilter()
    assert ("default", "t1") not in known
    assert "p1" not in known
    known.add("p1")
    assert "p1" in known
