from __future__ import annotations

from wallet_core import Code, OperatorApi, WalletConfig
from wallet_core.audit import verify_chain
from wallet_core.store import SqliteStore


def api() -> tuple[SqliteStore, OperatorApi]:
    store = SqliteStore(":memory:")
    return store, OperatorApi(store, WalletConfig.single())


def test_adjustments_are_idempotent_on_reference() -> None:
    store, op = api()
    assert op.adjust("dep-1", "p1", "EUR", 500, 0).balance == 500
    assert op.adjust("dep-1", "p1", "EUR", 500, 0).balance == 500
    assert op.adjust("wd-1", "p1", "EUR", -200, 0).balance == 300
    assert store.ledger_sums() == store.balances() == {("p1", "EUR"): 300}


def test_withdrawal_beyond_the_balance_is_refused() -> None:
    store, op = api()
    op.adjust("dep-1", "p1", "EUR", 100, 0)
    refused = op.adjust("wd-1", "p1", "EUR", -101, 0)
    assert refused.code is Code.INSUFFICIENT_FUNDS and refused.balance == 100
    assert op.balance("p1", "EUR") == 100


def test_sessions_open_close_and_conflicts() -> None:
    _, op = api()
    assert op.open_session("s1", "p1", "EUR", "default", 0).ok
    assert op.open_session("s1", "p1", "EUR", "default", 0).ok
    assert op.open_session("s1", "p2", "EUR", "default", 0).code is Code.BAD_REQUEST
    assert op.open_session("s2", "p1", "XXX", "default", 0).code is Code.BAD_REQUEST
    assert op.open_session("s3", "p1", "EUR", "nobody", 0).code is Code.BAD_REQUEST
    assert op.close_session("s1", 5).ok
    assert op.close_session("zz", 5).code is Code.SESSION_NOT_FOUND


def test_operator_actions_are_audited() -> None:
    store, op = api()
    op.open_session("s1", "p1", "EUR", "default", 0)
    op.adjust("dep-1", "p1", "EUR", 500, 0)
    op.set_blocked("p1", True, 0)
    count, broken = verify_chain(store.audit_rows())
    assert (count, broken) == (3, None)
