"""The wallet server: Starlette routes over the synchronous wallet core.

``POST /rgs/{aggregator}`` hands the raw bytes and lower-cased headers to
:meth:`WalletCore.handle`, the same path replay takes, and sends its answer back
byte for byte.  The operator API and ``/healthz`` follow PROTOCOL.md section 1.

Why the plumbing looks as it does:

* The body is read with a hard limit and never buffered past it: an oversized
  body is decided on its first ``limit + 1`` bytes (the engine answers 413
  ``BAD_REQUEST`` and audits it); the rest is drained and discarded (bounded) so the
  client can read the answer instead of seeing a reset.
* The core is synchronous and blocks on the store, so it runs on a bounded thread
  pool.  A request that waited longer than ``queue_wait_s`` for a thread is answered
  ``RETRY_LATER`` without touching the store; with the store's own bounded lock and
  pool waits, every answer leaves within 3 s.
* ``POST /rgs/{aggregator}`` is served by plain ASGI in front of Starlette (which
  keeps every other route): the busiest path skips the router, the middleware stack
  and the request/response objects, about a fifth of the server's CPU per callback.
* Nothing escapes as a 500: storage trouble and bugs alike become ``RETRY_LATER``
  (503 with ``Retry-After``), which promises that nothing was written -- true,
  because every write happens inside one store transaction.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wallet_core.clock import now_us
from wallet_core.codes import HTTP_STATUS, Code
from wallet_core.config import WalletConfig
from wallet_core.dialects import GenericDialect
from wallet_core.engine import Result, WalletCore
from wallet_core.errors import StorageError
from wallet_core.model import Decision, HttpResponse, Outcome
from wallet_core.money import MoneyError, format_amount, parse_amount
from wallet_core.operator import OperatorApi, OperatorResult
from wallet_core.store import SCHEMA_VERSION

__all__ = ["create_app"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Bytes of an oversized body read and thrown away so the client can read the 413.
DRAIN_LIMIT = 16 * 1024 * 1024
#: Seconds a client may take to send its body (and the rest of an oversized one).
BODY_TIMEOUT_S = 10.0
_JSON = "application/json"
#: Inline mode: a callback that may have queued longer than this is answered RETRY_LATER.
_STALE_S = 0.5
#: Inline mode: the heartbeat's period.
_TICK_S = 0.05
_FALLBACK = GenericDialect()


class _Busy(Exception):
    """A request waited too long for a worker thread; nothing was started."""


def create_app(
    core: WalletCore,
    operator: OperatorApi,
    config: WalletConfig,
    admin_token: str | None,
    *,
    threads: int = 32,
    queue_wait_s: float = 0.5,
    inline: bool = False,
) -> ASGIApp:
    """The ASGI app; ``admin_token`` None turns the operator API off (404).

    ``inline`` decides each callback on the event loop itself, one at a time, instead of
    handing it to the thread pool (see :meth:`_Server.raw_callback`).
    """
    server = _Server(core, operator, config, admin_token, threads, queue_wait_s, inline)
    callback = _RawCallback(server)
    routes = [
        # Reached for other methods only (a 405): every POST takes the fast path below.
        Route("/rgs/{aggregator}", callback, methods=["POST"]),
        Route("/admin/sessions", server.open_session, methods=["POST"]),
        Route("/admin/sessions/{session_id}", server.close_session, methods=["DELETE"]),
        Route("/admin/adjustments", server.adjust, methods=["POST"]),
        Route("/admin/balances/{player_id}/{currency}", server.balance, methods=["GET"]),
        Route("/healthz", server.healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, Exception: _last_resort},
    )
    return _CallbackFastPath(server, app)


class _RawCallback:
    """The callback route as a plain ASGI app (Starlette mounts it as one)."""

    def __init__(self, server: _Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.server.raw_callback(scope["path_params"]["aggregator"], scope, receive, send)


class _CallbackFastPath:
    """``POST /rgs/{aggregator}`` straight to the core; everything else goes to Starlette."""

    def __init__(self, server: _Server, app: Starlette) -> None:
        self.server, self.app = server, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path.startswith("/rgs/") and len(path) > 5 and "/" not in path[5:]:
                await self.server.raw_callback(path[5:], scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Server:
    def __init__(
        self,
        core: WalletCore,
        operator: OperatorApi,
        config: WalletConfig,
        admin_token: str | None,
        threads: int,
        queue_wait_s: float,
        inline: bool = False,
    ) -> None:
        self.core = core
        self._inline = inline
        # Inline mode's clock of its own loop (see _late): when the heartbeat last ran, and
        # until when callbacks are answered RETRY_LATER after the loop was held too long.
        self._tick_ran = self._tick_due = self._shed_until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.operator = operator
        self.config = config
        self._token = admin_token.encode() if admin_token else None
        self._threads = threads
        self._limiter: anyio.CapacityLimiter | None = None
        self._queue_wait = queue_wait_s

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the bounded pool; :class:`_Busy` if no thread came in time."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._threads)
        queued = time.monotonic()

        def bounded() -> T:
            if time.monotonic() - queued > self._queue_wait:
                raise _Busy
            return func(*args)

        return await anyio.to_thread.run_sync(bounded, limiter=self._limiter)

    # -- inline mode's heartbeat ------------------------------------------------------------
    def _late(self) -> bool:
        """Whether a callback starting now may have queued for longer than ``_STALE_S``.

        Callbacks wait only while the loop is held by decisions; a heartbeat timer runs
        whenever it is not.  So a heartbeat that has not run for ``_STALE_S``, or that ran
        ``_STALE_S`` late just now, means the callbacks being started may be that late: they
        are answered RETRY_LATER (nothing written) instead of queueing further.  With the
        store's decision budget this bounds the answer to ``_STALE_S`` + budget + a little.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._tick_ran = time.monotonic()
            self._tick_due = self._tick_ran + _TICK_S
            self._loop.call_later(_TICK_S, self._tick)
        now = time.monotonic()
        return now - self._tick_ran > _STALE_S or now < self._shed_until

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._tick_due > _STALE_S:  # the loop was held: what queued meanwhile is late
            self._shed_until = now + 2 * _TICK_S
        self._tick_ran, self._tick_due = now, now + _TICK_S
        assert self._loop is not None
        self._loop.call_later(_TICK_S, self._tick)

    # -- callbacks ------------------------------------------------------------------------
    async def raw_callback(
        self, aggregator: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        now = now_us()
        agg = self.config.aggregators.get(aggregator)
        dialect = agg.dialect if agg is not None else _FALLBACK
        try:
            body, complete = await _receive_body(receive, self.config.body_limit)
            headers: dict[str, str] = {}
            for name, value in scope["headers"]:
                headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
            if self._inline:
                # No hand-off: with several worker processes each deciding one callback at a
                # time, this costs a third less CPU per callback than the pool (BENCHMARKS.md).
                # A callback that may have waited behind a long decision is answered
                # RETRY_LATER untouched, so every answer still leaves within 3 s.
                if self._late():
                    raise _Busy
                result: Result = self.core.handle(aggregator, headers, body, now)
            else:
                result = await self._run(self.core.handle, aggregator, headers, body, now)
            answer = result.response
        except _BodyTimeout:
            answer = _error_answer(Code.BAD_REQUEST, "the body did not arrive in time")
            complete = False
        except (_Busy, _Disconnected, Exception) as exc:
            if not isinstance(exc, _Busy | _Disconnected):
                log.exception("callback failed outside the core; answering RETRY_LATER")
            busy = Decision(Outcome.REJECTED, Code.RETRY_LATER, 503, message="retry later")
            answer = dialect.render(busy, self.config.currencies)
            complete = True
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        raw.append((b"content-length", str(len(answer.body)).encode()))
        if not complete:
            raw.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        await send({"type": "http.response.body", "body": answer.body})

    # -- operator API ---------------------------------------------------------------------
    def _denied(self, request: Request) -> Response | None:
        if self._token is None:
            return _error(Code.SESSION_NOT_FOUND, "not found", status=404, code_text="NOT_FOUND")
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("latin-1", "replace"), self._token
        ):
            response = _error(Code.INVALID_SIGNATURE, "missing or wrong bearer token")
            response.headers["www-authenticate"] = "Bearer"
            return response
        return None

    async def _operator(self, func: Callable[..., T], *args: Any) -> T | Response:
        try:
            return await self._run(func, *args)
        except (_Busy, StorageError):
            return _error(Code.RETRY_LATER, "the wallet is busy, retry later")
        except Exception:
            log.exception("operator call failed; answering RETRY_LATER")
            return _error(Code.RETRY_LATER, "internal error, nothing was written; retry later")

    async def open_session(self, request: Request) -> Response:
        doc = await self._admin_json(request)
        if isinstance(doc, Response):
            return doc
        fields = _strings(doc, "session_id", "player_id", "currency", "aggregator")
        if isinstance(fields, Response):
            return fields
        result = await self._operator(self.operator.open_session, *fields, now_us())
        if isinstance(result, Response):
            return result
        if not result.ok:
            return _failed(result)
        return _json(201, {"status": "OK", "session_id": fields[0]})

    async def close_session(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        session_id = request.path_params["session_id"]
        result = await self._operator(self.operator.close_session, session_id, now_us())
        if isinstance(result, Response):
            return result
        return _failed(result) if not result.ok else Response(status_code=204)

    async def adjust(self, request: Request) -> Response:
        doc = await self._admin_json(request)
        if isinstance(doc, Response):
            return doc
        fields = _strings(doc, "reference", "player_id", "currency")
        if isinstance(fields, Response):
            return fields
        reference, player_id, currency = fields
        minor = self._amount(doc.get("amount"), currency, allow_negative=True)
        if isinstance(minor, Response):
            return minor
        result = await self._operator(
            self.operator.adjust, reference, player_id, currency, minor, now_us()
        )
        if isinstance(result, Response):
            return result
        if not result.ok:
            return _failed(result, currency, self.config)
        return self._balance_answer(result.balance or 0, currency, player_id)

    async def balance(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        player_id = request.path_params["player_id"]
        currency = request.path_params["currency"]
        if currency not in self.config.currencies:
            return _error(Code.BAD_REQUEST, f"unknown currency {currency[:16]!r}")
        result = await self._operator(self.operator.balance, player_id, currency)
        if isinstance(result, Response):
            return result
        return self._balance_answer(result, currency, player_id)

    def _balance_answer(self, minor: int, currency: str, player_id: str) -> Response:
        text = format_amount(minor, self.config.currencies.exponent(currency))
        doc = {"status": "OK", "balance": text, "currency": currency, "player_id": player_id}
        return _json(200, doc)

    def _amount(self, value: object, currency: str, *, allow_negative: bool) -> int | Response:
        try:
            exponent = self.config.currencies.exponent(currency)
            return parse_amount(value, exponent, allow_negative=allow_negative)
        except MoneyError as exc:
            return _error(Code.BAD_REQUEST, f"field amount: {exc}")

    async def _admin_json(self, request: Request) -> dict[str, Any] | Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        try:
            body, complete = await _receive_body(request.receive, self.config.body_limit)
        except (_BodyTimeout, _Disconnected):
            return _error(Code.BAD_REQUEST, "the body did not arrive in time")
        if not complete:
            response = _error(Code.BAD_REQUEST, "body too large", status=413)
            response.headers["connection"] = "close"
            return response
        try:
            doc = json.loads(body, parse_float=Decimal, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return _error(Code.BAD_REQUEST, "body is not valid JSON")
        if not isinstance(doc, dict):
            return _error(Code.BAD_REQUEST, "body must be a JSON object")
        return doc

    # -- health ---------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        store = self.core.store

        def probe() -> tuple[int | None, str | None]:
            # Through ``execute``, which the stores serialize with their transactions (SQLite
            # shares one connection between threads); a real query also proves the store is up.
            execute = getattr(store, "execute", None)
            if execute is None:
                return None, store.get_mode()
            meta = dict(
                execute("SELECT key, value FROM meta WHERE key IN ('schema_version', 'mode')")
            )
            version = meta.get("schema_version")
            return (None if version is None else int(version)), meta.get("mode")

        serving = self.core.mode.value
        result = await self._operator(probe)
        if isinstance(result, Response):
            body = {"status": "ERROR", "code": "RETRY_LATER", "mode": serving}
            return _json(503, body, retry=True)
        version, stored = result
        schema = {"version": version, "required": SCHEMA_VERSION, "ok": version == SCHEMA_VERSION}
        doc = {"status": "OK", "mode": stored or serving, "serving_mode": serving, "schema": schema}
        return _json(200, doc)


class _BodyTimeout(Exception):
    pass


class _Disconnected(Exception):
    """The client went away before its body arrived."""


async def _receive_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit + 1`` bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    complete = True
    with anyio.move_on_after(BODY_TIMEOUT_S) as scope:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            if complete:
                if size + len(chunk) > limit:
                    chunks.append(chunk[: limit + 1 - size])
                    size = limit + 1
                    complete = False
                else:
                    chunks.append(chunk)
                    size += len(chunk)
            else:
                size += len(chunk)
                if size > DRAIN_LIMIT:
                    break
            if not message.get("more_body", False):
                break
    if scope.cancelled_caught:
        raise _BodyTimeout
    return b"".join(chunks), complete


def _error_answer(code: Code, message: str) -> HttpResponse:
    """The contract's error body for a callback the core never saw."""
    doc = {"status": "ERROR", "code": code.value, "message": message}
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return HttpResponse(HTTP_STATUS[code], body, (("content-type", _JSON),))


def _send(answer: HttpResponse) -> Response:
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


def _json(status: int, doc: dict[str, Any], *, retry: bool = False) -> Response:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    response = Response(body, status_code=status, media_type=_JSON)
    if retry:
        response.headers["retry-after"] = "1"
    return response


def _error(
    code: Code,
    message: str,
    *,
    status: int | None = None,
    code_text: str | None = None,
    extra: dict[str, str] | None = None,
) -> Response:
    doc = {"status": "ERROR", "code": code_text or code.value, "message": message, **(extra or {})}
    return _json(status or HTTP_STATUS[code], doc, retry=code is Code.RETRY_LATER)


def _failed(
    result: OperatorResult, currency: str | None = None, config: WalletConfig | None = None
) -> Response:
    extra: dict[str, str] = {}
    if result.balance is not None and currency is not None and config is not None:
        extra["balance"] = format_amount(result.balance, config.currencies.exponent(currency))
    return _error(result.code, result.message, extra=extra)


def _strings(doc: dict[str, Any], *names: str) -> tuple[str, ...] | Response:
    values: list[str] = []
    for name in names:
        value = doc.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 128 or "\x00" in value:
            return _error(Code.BAD_REQUEST, f"field {name} must be a string of 1 to 128 characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            return _error(Code.BAD_REQUEST, f"field {name} must be UTF-8 text")
        values.append(value)
    return tuple(values)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    code = "NOT_FOUND" if status == 404 else "BAD_REQUEST"
    detail = exc.detail if isinstance(exc, HTTPException) else "bad request"
    return _error(Code.BAD_REQUEST, str(detail), status=status, code_text=code)


async def _last_resort(request: Request, exc: Exception) -> Response:
    log.error("unhandled error in the wallet server: %r", exc)
    return _error(Code.RETRY_LATER, "internal error, nothing was written; retry later")
