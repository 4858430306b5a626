"""What only the PostgreSQL store has to prove: its locks, its bounded waits, its options."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import _pg
from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.errors import SchemaOutdated, StorageError, StoreBusy
from wallet_core.store import open_store
from wallet_core.store.base import TxnRow
from wallet_core.store.postgres import PostgresStore
from wallet_core.testing import CallbackFactory

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return _pg.fresh_database_url(request)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = open_store(pg_url, lock_timeout_s=0.3, statement_timeout_s=2.0, pool_max=4)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


def _row(txid: str) -> TxnRow:
    return TxnRow("acme", txid, "bet", b"f" * 16, "OK", 200, b"{}", 0, "p1", "EUR", 1, "r1", True)


def _wait_for_lock_waiter(store: PostgresStore) -> None:
    """Block until some backend of this database waits on a lock (bounded)."""
    for _ in range(2000):
        rows = store.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        if int(str(rows[0][0])):
            return
        threading.Event().wait(0.005)
    raise AssertionError("no backend ever waited on the lock")


def test_claim_txn_holds_the_key_until_commit(store: PostgresStore) -> None:
    """A second claim of the same key waits for the first transaction, then sees its row."""
    release = threading.Event()
    claimed = threading.Event()

    def first() -> None:
        with store.transaction() as tx:
            assert tx.claim_txn("acme", "t1") is None
            claimed.set()
            tx.put_txn(_row("t1"), new=True)
            release.wait(timeout=30)

    with ThreadPoolExecutor(2) as pool:
        holder = pool.submit(first)
        assert claimed.wait(timeout=30)

        def second() -> TxnRow | None:
            with store.transaction() as tx:
                return tx.claim_txn("acme", "t1")

        waiter = pool.submit(second)
        _wait_for_lock_waiter(store)
        assert not waiter.done()
        release.set()
        holder.result(timeout=30)
        assert waiter.result(timeout=30) == _row("t1")


def test_a_lock_wait_past_lock_timeout_is_store_busy(store: PostgresStore) -> None:
    release = threading.Event()
    claimed = threading.Event()

    def holder() -> None:
        with store.transaction() as tx:
            tx.claim_txn("acme", "t1")
            claimed.set()
            release.wait(timeout=30)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(holder)
        assert claimed.wait(timeout=30)
        try:
            with pytest.raises(StoreBusy), store.transaction() as tx:
                tx.move("p1", "EUR", 100)
                tx.claim_txn("acme", "t1")
        finally:
            release.set()
            future.result(timeout=30)
    assert store.balances() == {}


def test_a_decision_budget_ends_a_transaction_before_the_server_timeouts(
    store: PostgresStore, pg_url: str
) -> None:
    """``serve --inline``: a transaction gives up when its budget is spent, here long before
    PostgreSQL's own lock and statement timeouts (5 s, 6 s) would end the wait."""
    budgeted = open_store(
        pg_url, lock_timeout_s=5.0, statement_timeout_s=6.0, decision_budget_s=0.3, pool_max=4
    )
    release = threading.Event()
    claimed = threading.Event()

    def holder() -> None:  # no budget: it holds the key as long as the test needs
        with store.transaction() as tx:
            tx.claim_txn("acme", "t1")
            claimed.set()
            release.wait(timeout=30)

    try:
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(holder)
            assert claimed.wait(timeout=30)
            started = time.monotonic()
            try:
                with pytest.raises(StoreBusy), budgeted.transaction() as tx:
                    tx.move("p1", "EUR", 100)
                    tx.claim_txn("acme", "t1")
            finally:
                waited = time.monotonic() - started
                release.set()
                future.result(timeout=30)
        assert waited < 4.0  # the budget, not the 5 s lock timeout, ended it
        assert budgeted.balances() == {}
    finally:
        budgeted.close()


def test_an_exhausted_pool_is_store_busy(pg_url: str) -> None:
    store = open_store(pg_url, pool_min=1, pool_max=1, pool_timeout_s=0.2)
    try:
        with store.transaction():
            with pytest.raises(StoreBusy), store.transaction():
                pass
    finally:
        store.close()


def test_a_failed_statement_is_storage_error_and_writes_nothing(store: PostgresStore) -> None:
    with pytest.raises(StorageError), store.transaction() as tx:
        tx.move("p1", "EUR", 100)
        tx.move("p1", "EUR", 2**63 - 1)  # bigint overflow
    assert store.balances() == {}


def test_the_balance_check_constraint_backs_the_conditional_debit(store: PostgresStore) -> None:
    with store.transaction() as tx:
        tx.move("p1", "EUR", 100)
    with pytest.raises(StorageError):
        store.execute("UPDATE accounts SET balance = -1")
    assert store.balances() == {("p1", "EUR"): 100}


def test_two_first_credits_of_one_account_both_count(store: PostgresStore) -> None:
    gate = threading.Barrier(8)

    def credit(_: int) -> int | None:
        gate.wait(timeout=30)
        for _attempt in range(20):
            try:
                with store.transaction() as tx:
                    return tx.move("new", "EUR", 5)
            except StoreBusy:
                continue
        return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(credit, range(8)))
    assert sorted(r for r in results if r is not None) == [5, 10, 15, 20, 25, 30, 35, 40]
    assert store.balances() == {("new", "EUR"): 40}


def test_sqlite_options_are_accepted_and_replay_skips_the_commit_flush(pg_url: str) -> None:
    store = open_store(pg_url, durability="replay", group_size=500)
    try:
        ((setting,),) = store.execute("SHOW synchronous_commit")  # type: ignore[attr-defined]
        assert setting == "off"
        store.flush()
    finally:
        store.close()


def test_db_upgrade_is_idempotent_and_outdated_stores_are_refused(pg_url: str) -> None:
    first = open_store(pg_url, migrate=True)
    assert first.migrations_applied == 1
    first.close()
    again = open_store(pg_url, migrate=True)
    assert again.migrations_applied == 0
    again.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")  # type: ignore[attr-defined]
    again.close()
    with pytest.raises(SchemaOutdated):
        open_store(pg_url, create=False)


def test_an_unreachable_server_is_one_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot connect") as caught:
        open_store("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout_s=1)
    assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_refund_racing_its_bet_waits_on_the_bet_before_taking_the_round(
    store: PostgresStore,
) -> None:
    """The engine claims a refund's bet first, so the bet (holding its own key) can still
    take the round: no lock cycle, no deadlock, no RETRY_LATER."""
    config = WalletConfig.single("acme")
    assert OperatorApi(store, config).open_session("s1", "p1", "EUR", "acme", 1).ok
    core = WalletCore(store, config, mode=Mode.LIVE)
    factory = CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})
    headers, body = factory.make(
        "refund", transaction_id="x1", round_id="r1", amount="1.00", ref_transaction_id="b1"
    )
    with ThreadPoolExecutor(1) as pool, store.transaction() as bet:
        assert bet.claim_txn("acme", "b1") is None
        refund = pool.submit(core.handle, "acme", headers, body, 2)
        _wait_for_lock_waiter(store)
        assert bet.get_round("acme", "r1") is None  # would time out if the refund held r1
    assert refund.result(timeout=30).response.status == 200
