"""Replay durability (write-behind buffer) keeps every guarantee of a transaction."""

from __future__ import annotations

from pathlib import Path

from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.audit import verify_chain
from wallet_core.store import SqliteStore
from wallet_core.testing import CallbackFactory

F = CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})


def drive(store: SqliteStore) -> list[bytes]:
    config = WalletConfig.single()
    OperatorApi(store, config).adjust("open", "p1", "EUR", 1000, 0)
    core = WalletCore(store, config, mode=Mode.SHADOW)
    bodies = []
    calls = [
        ("bet", {"transaction_id": f"t{i}", "amount": "1.00", "round_id": "r"}) for i in range(12)
    ]
    calls += [
        (
            "refund",
            {"transaction_id": "f1", "amount": "1.00", "round_id": "r", "ref_transaction_id": "t3"},
        ),
        ("bet", {"transaction_id": "t3", "amount": "1.00", "round_id": "r"}),
        (
            "refund",
            {
                "transaction_id": "f2",
                "amount": "1.00",
                "round_id": "r",
                "ref_transaction_id": "ghost",
            },
        ),
        ("bet", {"transaction_id": "ghost", "amount": "1.00", "round_id": "r"}),
        ("bet", {"transaction_id": "big", "amount": "100.00", "round_id": "r"}),
    ]
    for i, (event, fields) in enumerate(calls):
        headers, body = F.make(event, **fields)
        bodies.append(core.handle("default", headers, body, i + 1).response.body)
    return bodies


def test_buffered_replay_store_decides_like_the_live_store(tmp_path: Path) -> None:
    live = SqliteStore(tmp_path / "live.db")
    replay = SqliteStore(tmp_path / "replay.db", durability="replay", group_size=5)
    assert drive(live) == drive(replay)
    assert replay.balances() == live.balances()
    assert replay.ledger_sums() == replay.balances()
    assert verify_chain(replay.audit_rows())[1] is None
    replay.close()
    reopened = SqliteStore(tmp_path / "replay.db")
    assert reopened.balances() == live.balances()
    assert [r.hash for r in reopened.audit_rows()] == [r.hash for r in live.audit_rows()]


def test_a_failed_callback_leaves_no_trace_in_the_buffer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db", durability="replay")
    config = WalletConfig.single()
    OperatorApi(store, config).adjust("open", "p1", "EUR", 1000, 0)
    try:
        with store.transaction() as tx:
            tx.move("p1", "EUR", -500)
            raise RuntimeError("fault")
    except RuntimeError:
        pass
    assert store.balances() == {("p1", "EUR"): 1000}


def test_an_evicted_cache_decides_like_the_live_store(tmp_path: Path) -> None:
    live = SqliteStore(tmp_path / "live.db")
    replay = SqliteStore(tmp_path / "replay.db", durability="replay", group_size=2)
    buffer = replay._buffer
    assert buffer is not None
    buffer.max_cached = 2  # evict after nearly every flush: reads come from filters and SQLite
    assert drive(live) == drive(replay)
    assert "txns" in buffer.filters and "txns" not in buffer.complete
    assert replay.balances() == live.balances()
    replay.close()


def test_after_eviction_a_new_key_does_not_query_sqlite(tmp_path: Path) -> None:
    replay = SqliteStore(tmp_path / "replay.db", durability="replay", group_size=2)
    buffer = replay._buffer
    assert buffer is not None
    buffer.max_cached = 2
    drive(replay)
    asked: list[object] = []
    query = buffer._query
    buffer._query = lambda table, key: asked.append(key) or query(table, key)  # type: ignore[method-assign]
    assert all(buffer.miss("txns", ("default", f"new{i}")) is None for i in range(1000))
    assert len(asked) < 50  # only the filter's false hits (about 0.5 %) ask SQLite
    stored = buffer.miss("txns", ("default", "t3"))
    assert stored is not None and stored.transaction_id == "t3"
    assert ("default", "t3") in asked
    replay.close()
