"""One store test suite, run on SQLite and on PostgreSQL (``make_store``/``store_url``).

Each test pins a promise of the :class:`~wallet_core.store.base.Store` protocol that
the engine relies on; the concurrent ones drive the real engine from threads so the
database's own locking is what is being tested.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from wallet_core import Code, Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.audit import verify_chain
from wallet_core.errors import SchemaOutdated, StorageError
from wallet_core.store import SCHEMA_VERSION, Store
from wallet_core.store.base import (
    AuditEntry,
    HistoryStore,
    LedgerEntry,
    RoundRow,
    SessionRow,
    TxnRow,
)
from wallet_core.store.schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from wallet_core.testing import CallbackFactory

MakeStore = Callable[..., Store]
T0 = 1_790_000_000_000_000


def _entry(n: int, player: str | None = "p1") -> AuditEntry:
    return AuditEntry(
        T0 + n, "acme", "callback", "{}", b"req%d" % n, "{}", b"resp", player, "EUR", n, n
    )


def _txn(txid: str, **changes: object) -> TxnRow:
    row = TxnRow(
        "acme",
        txid,
        "bet",
        b"\x01" * 16,
        "OK",
        200,
        b'{"status":"OK"}',
        900,
        "p1",
        "EUR",
        100,
        "r1",
        True,
    )
    for key, value in changes.items():
        setattr(row, key, value)
    return row


def test_both_backends_have_every_migration() -> None:
    assert len(SQLITE_MIGRATIONS) == len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION


def test_a_new_store_is_created_at_the_current_schema(make_store: MakeStore) -> None:
    store = make_store()
    assert store.schema_version() == SCHEMA_VERSION  # type: ignore[attr-defined]
    assert store.balances() == {} and store.ledger_sums() == {}
    assert list(store.audit_rows()) == []


def test_an_outdated_store_is_refused_until_upgraded(make_store: MakeStore) -> None:
    store = make_store()
    store.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")  # type: ignore[attr-defined]
    store.close()
    with pytest.raises(SchemaOutdated, match="db upgrade"):
        make_store(create=False)


def test_mode_is_stored_with_the_ledger(make_store: MakeStore) -> None:
    store = make_store()
    assert store.get_mode() is None
    store.set_mode("shadow")
    store.set_mode("live")
    store.close()
    assert make_store(create=False).get_mode() == "live"


def test_debit_is_conditional_and_credit_creates_the_account(make_store: MakeStore) -> None:
    store = make_store()
    with store.transaction() as tx:
        assert tx.get_balance("p1", "EUR") is None
        assert tx.move("p1", "EUR", -1) is None
        assert tx.get_balance("p1", "EUR") is None
        assert tx.move("p1", "EUR", 500) == 500
        assert tx.move("p1", "EUR", -501) is None
        assert tx.move("p1", "EUR", -500) == 0
        assert tx.move("p1", "EUR", 0) == 0
    assert store.balances() == {("p1", "EUR"): 0}


def test_the_largest_64_bit_balance_round_trips(make_store: MakeStore) -> None:
    store = make_store()
    with store.transaction() as tx:
        assert tx.move("whale", "BTC", 2**63 - 1) == 2**63 - 1
    assert store.balances() == {("whale", "BTC"): 2**63 - 1}


def test_an_exception_rolls_back_every_write(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.move("p1", "EUR", 100)
        tx.put_txn(_txn("t1"), new=True)
        tx.add_ledger(LedgerEntry(T0, "acme", "t1", "win", "p1", "EUR", 100, 100))
        tx.append_audit(_entry(1))
        raise RuntimeError("between the debit and the commit")
    assert store.balances() == {} and store.ledger_sums() == {}
    assert list(store.audit_rows()) == []
    with store.transaction() as tx:
        assert tx.claim_txn("acme", "t1") is None


def test_idempotency_rows_round_trip_and_update(make_store: MakeStore) -> None:
    store = make_store()
    with store.transaction() as tx:
        assert tx.claim_txn("acme", "t1") is None
        tx.put_txn(_txn("t1"), new=True)
        tx.put_txn(
            _txn(
                "tomb",
                fingerprint=None,
                code=None,
                status=None,
                body=None,
                balance_after=None,
                applied=False,
                refunded_by="rf1",
            ),
            new=True,
        )
    with store.transaction() as tx:
        assert tx.claim_txn("acme", "t1") == _txn("t1")
        assert tx.claim_txn("other", "t1") is None
        tomb = tx.claim_txn("acme", "tomb")
        assert tomb is not None and tomb.fingerprint is None and tomb.refunded_by == "rf1"
        tx.put_txn(_txn("t1", refunded_by="rf2"), new=False)
    with store.transaction() as tx:
        assert tx.claim_txn("acme", "t1") == _txn("t1", refunded_by="rf2")


def test_an_insert_of_a_known_transaction_fails_and_writes_nothing(make_store: MakeStore) -> None:
    store = make_store()
    with store.transaction() as tx:
        tx.put_txn(_txn("t1"), new=True)
    with pytest.raises(StorageError), store.transaction() as tx:
        tx.move("p1", "EUR", 100)
        tx.put_txn(_txn("t1"), new=True)
    assert store.balances() == {}


def test_sessions_rounds_players_and_adjustments(make_store: MakeStore) -> None:
    store = make_store()
    with store.transaction() as tx:
        assert tx.get_session("s1") is None
        tx.put_session(SessionRow("s1", "acme", "p1", "EUR", T0, T0), new=True)
        assert tx.get_round("acme", "r1") is None
        tx.put_round(RoundRow("acme", "r1", "p1", "EUR", bet_total=100), new=True)
        assert not tx.player_blocked("p1")
        tx.set_player_blocked("p1", True)
        assert tx.adjustment_done("dep-1") is None
        tx.record_adjustment("dep-1", 5000)
    with store.transaction() as tx:
        tx.put_session(SessionRow("s1", "acme", "p1", "EUR", T0, T0 + 5, T0 + 9), new=False)
        tx.put_round(RoundRow("acme", "r1", "p1", "EUR", 100, 40, 0, T0 + 7), new=False)
    with store.transaction() as tx:
        assert tx.get_session("s1") == SessionRow("s1", "acme", "p1", "EUR", T0, T0 + 5, T0 + 9)
        assert tx.get_round("acme", "r1") == RoundRow("acme", "r1", "p1", "EUR", 100, 40, 0, T0 + 7)
        assert tx.player_blocked("p1")
        tx.set_player_blocked("p1", False)
        assert not tx.player_blocked("p1")
        assert tx.adjustment_done("dep-1") == 5000


def test_audit_chain_verifies_and_continues_after_reopening(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(1, 4):
        with store.transaction() as tx:
            assert tx.append_audit(_entry(n)) == n
    store.close()
    store = make_store(create=False)
    with store.transaction() as tx:
        assert tx.append_audit(_entry(4, player=None)) == 4
    rows = list(store.audit_rows())
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert rows[3].entry == _entry(4, player=None)
    assert verify_chain(rows) == (4, None)


def test_tampering_with_a_stored_row_breaks_the_chain(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(1, 4):
        with store.transaction() as tx:
            tx.append_audit(_entry(n))
    store.execute("UPDATE audit SET amount_minor = 999 WHERE seq = 2")  # type: ignore[attr-defined]
    count, broken = verify_chain(store.audit_rows())
    assert count == 1 and broken is not None and broken.seq == 2


def test_balances_and_ledger_sums_per_account(make_store: MakeStore) -> None:
    store = make_store()
    with store.transaction() as tx:
        for player, currency, delta in [("p1", "EUR", 700), ("p1", "EUR", -200), ("p2", "JPY", 5)]:
            after = tx.move(player, currency, delta)
            assert after is not None
            tx.add_ledger(
                LedgerEntry(T0, "acme", f"{player}{delta}", "x", player, currency, delta, after)
            )
    assert store.balances() == {("p1", "EUR"): 500, ("p2", "JPY"): 5}
    assert store.ledger_sums() == store.balances()


# -- concurrency through the engine ---------------------------------------------------------


def _wallet(store: Store, opening: int) -> tuple[WalletCore, CallbackFactory]:
    config = WalletConfig.single("acme")
    operator = OperatorApi(store, config)
    assert operator.open_session("s1", "p1", "EUR", "acme", T0).ok
    assert operator.adjust("opening", "p1", "EUR", opening, T0).ok
    factory = CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})
    return WalletCore(store, config, mode=Mode.LIVE), factory


def _storm(
    core: WalletCore, requests: list[tuple[dict[str, str], bytes]]
) -> list[tuple[int, bytes]]:
    """Send every request at once from its own thread; retry RETRY_LATER as an aggregator would."""
    gate = threading.Barrier(len(requests))

    def send(request: tuple[dict[str, str], bytes]) -> tuple[int, bytes]:
        gate.wait(timeout=30)
        for _ in range(50):
            result = core.handle("acme", request[0], request[1], T0 + 1)
            if result.decision.code is not Code.RETRY_LATER:
                break
        return result.response.status, result.response.body

    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        return list(pool.map(send, requests))


@pytest.mark.slow
def test_concurrent_copies_of_one_bet_apply_once(make_store: MakeStore) -> None:
    store = make_store()
    core, factory = _wallet(store, 10_000)
    bet = factory.make("bet", transaction_id="t1", round_id="r1", amount="1.00")
    answers = _storm(core, [bet] * 40)
    assert len(set(answers)) == 1 and answers[0][0] == 200
    assert store.balances() == {("p1", "EUR"): 9_900} == store.ledger_sums()
    ((moves,),) = store.execute("SELECT count(*) FROM ledger WHERE transaction_id = 't1'")  # type: ignore[attr-defined]
    assert moves == 1
    assert verify_chain(store.audit_rows()) == (2 + 40, None)


@pytest.mark.slow
def test_concurrent_bets_never_overdraw_and_chain_once(make_store: MakeStore) -> None:
    store = make_store()
    core, factory = _wallet(store, 1_000)
    bets = [
        factory.make("bet", transaction_id=f"t{i}", round_id=f"r{i % 3}", amount="0.70")
        for i in range(30)
    ]
    answers = _storm(core, bets)
    accepted = sum(1 for status, _ in answers if status == 200)
    refused = [body for status, body in answers if status == 402]
    assert accepted == 14 and len(refused) == 16
    assert all(b'"INSUFFICIENT_FUNDS"' in body for body in refused)
    assert store.balances() == {("p1", "EUR"): 1_000 - 14 * 70} == store.ledger_sums()
    assert verify_chain(store.audit_rows()) == (2 + 30, None)


def test_txn_history_lists_decided_callbacks_in_audit_order(make_store: MakeStore) -> None:
    store = make_store()
    core, factory = _wallet(store, 1_000)
    sent = [
        factory.make("bet", transaction_id="b1", round_id="r1", amount="2.00"),
        factory.make("win", transaction_id="w1", round_id="r1", amount="0.50"),
        factory.make(
            "refund", transaction_id="x1", round_id="r1", amount="2.00", ref_transaction_id="b1"
        ),
        factory.make("bet", transaction_id="b2", round_id="r2", amount="99.00"),
    ]
    for n, (headers, body) in enumerate(sent):
        core.handle("acme", headers, body, T0 + 10 + n)
    assert isinstance(store, HistoryStore)
    rows = list(store.txn_history(T0 + 11, None))
    assert [(r.event, r.transaction_id, r.outcome, r.code) for r in rows] == [
        ("win", "w1", "APPLIED", "OK"),
        ("refund", "x1", "APPLIED", "OK"),
        ("bet", "b2", "REJECTED", "INSUFFICIENT_FUNDS"),
    ]
    assert [r.round_id for r in rows] == ["r1", "r1", "r2"]
    assert rows[1].ref_transaction_id == "b1" and rows[0].ref_transaction_id is None
    assert [r.amount_minor for r in rows] == [50, 200, 9_900]
    assert rows[1].balance_after == 1_050
    assert [json.loads(r.flags) for r in rows] == [[], [], []]
    assert [r.transaction_id for r in store.txn_history(None, T0 + 11)] == ["b1"]
