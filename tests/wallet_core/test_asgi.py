"""The ASGI app in process (Starlette's TestClient): routes, auth, limits, error rendering."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.x prefers httpx2; httpx is what we ship
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.asgi import create_app
from wallet_core.clock import now_us
from wallet_core.errors import StoreBusy
from wallet_core.store import SqliteStore
from wallet_core.testing import CallbackFactory

TOKEN = "t0ken"
AUTH = {"authorization": f"Bearer {TOKEN}"}
LIMIT = 4096


def _app(
    tmp_path: Path, mode: Mode = Mode.LIVE, token: str | None = TOKEN, **options: Any
) -> tuple[TestClient, SqliteStore, WalletCore]:
    store = SqliteStore(tmp_path / "wallet.db")
    store.set_mode(mode.value)
    config = WalletConfig.single("acme", body_limit=LIMIT)
    core = WalletCore(store, config, mode=mode)
    operator = OperatorApi(store, config)
    assert operator.open_session("s1", "p1", "EUR", "acme", now_us()).ok
    assert operator.adjust("opening", "p1", "EUR", 10_000, now_us()).ok
    client = TestClient(create_app(core, operator, config, token, **options))
    return client, store, core


@pytest.fixture(params=[False, True], ids=["pool", "inline"])
def app(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, SqliteStore, WalletCore]]:
    """Every test below runs with the thread pool and with ``inline`` decisions."""
    client, store, core = _app(tmp_path, inline=request.param)
    with client:
        yield client, store, core
    store.close()


@pytest.fixture
def factory() -> CallbackFactory:
    return CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})


def _bet(factory: CallbackFactory, txid: str = "t1", amount: str = "10.00") -> Any:
    return factory.make("bet", transaction_id=txid, round_id="r1", amount=amount)


# -- callbacks ---------------------------------------------------------------------------------


def test_a_callback_gets_the_cores_answer_byte_for_byte(app: Any, factory: CallbackFactory) -> None:
    client, store, _ = app
    headers, body = _bet(factory)
    response = client.post("/rgs/acme", content=body, headers=headers)
    assert response.status_code == 200
    assert (
        response.content
        == b'{"status":"OK","balance":"90.00","currency":"EUR","transaction_id":"t1"}'
    )
    assert response.headers["content-type"] == "application/json"
    again = client.post("/rgs/acme", content=body, headers=headers)
    assert again.content == response.content
    assert store.balances() == {("p1", "EUR"): 9_000}


def test_signature_headers_are_matched_whatever_their_case(
    app: Any, factory: CallbackFactory
) -> None:
    client, _, _ = app
    headers, body = _bet(factory)
    shouting = {k.upper(): v for k, v in headers.items()}
    assert client.post("/rgs/acme", content=body, headers=shouting).status_code == 200


@pytest.mark.parametrize(
    ("path", "headers", "code"),
    [
        ("/rgs/acme", {}, "INVALID_SIGNATURE"),
        ("/rgs/acme", {"x-rgs-signature": "sha256=00"}, "INVALID_SIGNATURE"),
        ("/rgs/nobody", None, "INVALID_SIGNATURE"),
    ],
)
def test_unauthenticated_callbacks_are_refused_without_moving_money(
    app: Any, factory: CallbackFactory, path: str, headers: dict[str, str] | None, code: str
) -> None:
    client, store, _ = app
    signed, body = _bet(factory)
    response = client.post(path, content=body, headers=signed if headers is None else headers)
    assert response.status_code == 401 and response.json()["code"] == code
    assert store.balances() == {("p1", "EUR"): 10_000}


def test_an_oversized_body_is_413_and_is_not_kept(app: Any, factory: CallbackFactory) -> None:
    client, store, _ = app
    body = b'{"event":"bet",' + b" " * (2 * 1024 * 1024) + b"}"
    response = client.post("/rgs/acme", content=body, headers=factory.sign(body))
    assert response.status_code == 413
    assert response.json()["code"] == "BAD_REQUEST"
    assert response.headers["connection"] == "close"
    ((size,),) = store.execute("SELECT max(length(request)) FROM audit")
    assert size is not None and int(size) < LIMIT  # type: ignore[call-overload]
    assert store.balances() == {("p1", "EUR"): 10_000}


def test_a_chunked_oversized_body_is_cut_at_the_limit(app: Any) -> None:
    client, _, _ = app

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 1024

    response = client.post("/rgs/acme", content=chunks())
    assert response.status_code == 413 and response.json()["code"] == "BAD_REQUEST"


def test_a_body_exactly_at_the_limit_is_decided(app: Any, factory: CallbackFactory) -> None:
    client, _, _ = app
    headers, body = _bet(factory)
    padded = body[:-1] + b" " * (LIMIT - len(body)) + b"}"
    assert len(padded) == LIMIT
    response = client.post("/rgs/acme", content=padded, headers=factory.sign(padded))
    assert response.status_code == 200


def test_shadow_mode_answers_the_mock_for_a_refusal(
    tmp_path: Path, factory: CallbackFactory
) -> None:
    client, store, _ = _app(tmp_path, mode=Mode.SHADOW)
    with client:
        headers, body = _bet(factory, amount="1000.00")
        response = client.post("/rgs/acme", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["status"] == "OK"
    assert store.balances() == {("p1", "EUR"): 10_000}


class _BusyStore:
    """A store whose every transaction times out on its lock."""

    def __init__(self, inner: SqliteStore) -> None:
        self._inner = inner

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        raise StoreBusy("lock wait exceeded")
        yield  # pragma: no cover

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_a_busy_store_answers_retry_later_with_retry_after(
    tmp_path: Path, factory: CallbackFactory
) -> None:
    client, store, core = _app(tmp_path)
    core.store = _BusyStore(store)  # type: ignore[assignment]
    with client:
        headers, body = _bet(factory)
        response = client.post("/rgs/acme", content=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["code"] == "RETRY_LATER"
    assert response.headers["retry-after"] == "1"


def test_a_request_that_waited_too_long_for_a_thread_is_retry_later(
    tmp_path: Path, factory: CallbackFactory
) -> None:
    client, store, _ = _app(tmp_path, queue_wait_s=-1.0)
    with client:
        headers, body = _bet(factory)
        response = client.post("/rgs/acme", content=body, headers=headers)
        admin = client.get("/admin/balances/p1/EUR", headers=AUTH)
    assert response.status_code == 503 and response.json()["code"] == "RETRY_LATER"
    assert admin.status_code == 503 and admin.headers["retry-after"] == "1"
    assert store.balances() == {("p1", "EUR"): 10_000}


def test_a_bug_outside_the_core_is_retry_later_not_500(
    tmp_path: Path, factory: CallbackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _, core = _app(tmp_path)

    def broken(*args: object) -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(core, "handle", broken)
    with client:
        headers, body = _bet(factory)
        response = client.post("/rgs/acme", content=body, headers=headers)
    assert response.status_code == 503 and response.json()["code"] == "RETRY_LATER"


# -- operator API ------------------------------------------------------------------------------

ADMIN_CALLS = [
    (
        "POST",
        "/admin/sessions",
        {"session_id": "s9", "player_id": "p9", "currency": "EUR", "aggregator": "acme"},
    ),
    ("DELETE", "/admin/sessions/s1", None),
    (
        "POST",
        "/admin/adjustments",
        {"reference": "x", "player_id": "p1", "currency": "EUR", "amount": "5.00"},
    ),
    ("GET", "/admin/balances/p1/EUR", None),
]


@pytest.mark.parametrize(("method", "path", "doc"), ADMIN_CALLS)
def test_without_a_configured_token_the_operator_api_is_404(
    tmp_path: Path, method: str, path: str, doc: Any
) -> None:
    client, store, _ = _app(tmp_path, token=None)
    with client:
        response = client.request(method, path, json=doc, headers=AUTH)
    assert response.status_code == 404
    assert store.balances() == {("p1", "EUR"): 10_000}


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
@pytest.mark.parametrize(("method", "path", "doc"), ADMIN_CALLS)
def test_operator_calls_need_the_bearer_token(
    app: Any, method: str, path: str, doc: Any, auth: str | None
) -> None:
    client, store, _ = app
    headers = {} if auth is None else {"authorization": auth}
    response = client.request(method, path, json=doc, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "INVALID_SIGNATURE"
    assert response.headers["www-authenticate"] == "Bearer"
    assert store.balances() == {("p1", "EUR"): 10_000}


def test_sessions_open_and_close(app: Any, factory: CallbackFactory) -> None:
    client, _, _ = app
    doc = {"session_id": "s2", "player_id": "p1", "currency": "EUR", "aggregator": "acme"}
    assert client.post("/admin/sessions", json=doc, headers=AUTH).status_code == 201
    assert client.post("/admin/sessions", json=doc, headers=AUTH).status_code == 201
    other = dict(doc, player_id="p2")
    assert client.post("/admin/sessions", json=other, headers=AUTH).status_code == 400
    unknown = dict(doc, session_id="s3", aggregator="nobody")
    assert client.post("/admin/sessions", json=unknown, headers=AUTH).status_code == 400
    assert client.delete("/admin/sessions/s1", headers=AUTH).status_code == 204
    missing = client.delete("/admin/sessions/none", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["code"] == "SESSION_NOT_FOUND"
    headers, body = _bet(factory)
    closed = client.post("/rgs/acme", content=body, headers=headers)
    assert closed.status_code == 404 and closed.json()["code"] == "SESSION_NOT_FOUND"


@pytest.mark.parametrize(
    "doc",
    [
        {"session_id": "s2", "player_id": "p1", "currency": "EUR"},
        {"session_id": 7, "player_id": "p1", "currency": "EUR", "aggregator": "acme"},
        {"session_id": "", "player_id": "p1", "currency": "EUR", "aggregator": "acme"},
        {"session_id": "s2", "player_id": "p1", "currency": "XXX", "aggregator": "acme"},
        ["not", "an", "object"],
    ],
)
def test_bad_session_requests_are_400(app: Any, doc: Any) -> None:
    client, _, _ = app
    response = client.post("/admin/sessions", json=doc, headers=AUTH)
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST"


def test_adjustments_move_money_once_per_reference(app: Any) -> None:
    client, store, _ = app
    doc = {"reference": "dep-1", "player_id": "p1", "currency": "EUR", "amount": "12.34"}
    first = client.post("/admin/adjustments", json=doc, headers=AUTH)
    assert first.status_code == 200 and first.json()["balance"] == "112.34"
    assert client.post("/admin/adjustments", json=doc, headers=AUTH).json() == first.json()
    out = dict(doc, reference="wd-1", amount="-100.00")
    assert client.post("/admin/adjustments", json=out, headers=AUTH).json()["balance"] == "12.34"
    too_much = dict(doc, reference="wd-2", amount="-12.35")
    refused = client.post("/admin/adjustments", json=too_much, headers=AUTH)
    assert refused.status_code == 402
    assert refused.json() | {"message": ""} == {
        "status": "ERROR",
        "code": "INSUFFICIENT_FUNDS",
        "message": "",
        "balance": "12.34",
    }
    assert store.balances() == {("p1", "EUR"): 1_234} == store.ledger_sums()
    balance = client.get("/admin/balances/p1/EUR", headers=AUTH)
    assert balance.status_code == 200 and balance.json()["balance"] == "12.34"
    assert client.get("/admin/balances/nobody/JPY", headers=AUTH).json()["balance"] == "0"


@pytest.mark.parametrize(
    "body",
    [
        b'{"reference":"r","player_id":"p1","currency":"EUR","amount":5}',
        b'{"reference":"r","player_id":"p1","currency":"EUR","amount":5.0}',
        b'{"reference":"r","player_id":"p1","currency":"EUR","amount":"5.001"}',
        b'{"reference":"r","player_id":"p1","currency":"EUR","amount":"1e3"}',
        b'{"reference":"r","player_id":"p1","currency":"EUR","amount":"99999999999999999999"}',
        b'{"reference":"r","player_id":"p1","currency":"EUR"}',
        b'{"reference":"r","player_id":"p1","currency":"ZZZ","amount":"1.00"}',
        b'{"reference":"r","player_id":"p1","currency":"EUR","amount":NaN}',
        b"{not json",
        b"\xff\xfe",
    ],
)
def test_bad_adjustments_are_400_and_move_nothing(app: Any, body: bytes) -> None:
    client, store, _ = app
    response = client.post("/admin/adjustments", content=body, headers=AUTH)
    assert response.status_code == 400 and response.json()["code"] == "BAD_REQUEST"
    assert store.balances() == {("p1", "EUR"): 10_000}


def test_an_oversized_admin_body_is_413(app: Any) -> None:
    client, _, _ = app
    body = json.dumps({"reference": "x" * (LIMIT + 10)}).encode()
    assert client.post("/admin/adjustments", content=body, headers=AUTH).status_code == 413


def test_balance_of_an_unknown_currency_is_400(app: Any) -> None:
    client, _, _ = app
    assert client.get("/admin/balances/p1/ZZZ", headers=AUTH).status_code == 400


# -- health and routing ------------------------------------------------------------------------


def test_healthz_shows_mode_and_schema_without_a_token(tmp_path: Path) -> None:
    client, _, _ = _app(tmp_path, mode=Mode.SHADOW)
    with client:
        doc = client.get("/healthz").json()
    assert doc["status"] == "OK" and doc["mode"] == "shadow"
    assert doc["schema"] == {"version": 1, "required": 1, "ok": True}


def test_unknown_routes_and_methods_are_4xx_json(app: Any) -> None:
    client, _, _ = app
    assert client.get("/nowhere").status_code == 404
    wrong = client.get("/rgs/acme")
    assert wrong.status_code == 405 and wrong.json()["status"] == "ERROR"


def test_healthz_of_an_unreachable_store_is_retry_later(tmp_path: Path) -> None:
    client, store, core = _app(tmp_path)

    class Down(_BusyStore):
        def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
            raise StoreBusy("no database connection in time")

    core.store = Down(store)  # type: ignore[assignment]
    with client:
        response = client.get("/healthz")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["code"] == "RETRY_LATER"
