"""``rgs-shadow serve``: the wallet as an HTTP service (Starlette on uvicorn).

Everything that can be wrong with the command line, the configuration or the store
is found before the socket opens, and reported as one line with exit 2.  The socket
is bound here rather than by uvicorn so a busy port is such a line too, and so
``--listen 127.0.0.1:0`` works: the chosen port is printed on the ready line, which
tests and scripts read.  uvicorn's own SIGTERM/SIGINT handling stops accepting,
finishes the requests in flight, and returns; the store is closed after that.

``--workers N`` (PostgreSQL only) forks N server processes after the store is
checked, migrated, the mode recorded and the snapshot imported; they share the
listening socket and each opens its own connection pool (the workers are stateless:
every callback is one database transaction, its locks in PostgreSQL).  SQLite has
one writer, so it is always served by one process.  The parent only supervises:
SIGTERM or SIGINT is passed on to every worker (which finish their requests in
flight), and when one worker ends on its own the others are stopped and the
command fails, for the service manager to restart it.  A worker also ends when
the parent dies (even by SIGKILL), so no worker outlives its command.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NamedTuple

import typer

from wallet_core.clock import now_us
from wallet_core.config import load_config
from wallet_core.engine import WalletCore
from wallet_core.errors import ConfigError, InputError
from wallet_core.model import Mode
from wallet_core.operator import OperatorApi
from wallet_core.snapshot import read_snapshot
from wallet_core.store import Store, open_store

__all__ = ["register", "serve"]

ADMIN_TOKEN_ENV = "RGS_SHADOW_ADMIN_TOKEN"
#: ``--inline`` on PostgreSQL: the most one decision may take, pool wait included.
INLINE_BUDGET_S = 1.5
#: Seconds uvicorn waits for requests in flight after SIGTERM before giving up on them.
GRACEFUL_S = 10


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; :class:`InputError` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"--listen: {text!r} is not HOST:PORT")
    return host, int(port)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every answer waits out the client's delayed ACK (about 40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InputError(f"--listen: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


class _Serving(NamedTuple):
    """What every server process of one ``serve`` needs, from the command line."""

    db: str
    config: Any
    token: str | None
    sock: socket.socket
    mode: str
    inline: bool


def _store_options(db: str, inline: bool = False) -> dict[str, Any]:
    if db.startswith("sqlite:"):
        # One writer: a request that cannot get the lock in 1.5 s answers RETRY_LATER.
        return {"durability": "live", "lock_timeout_s": 1.5}
    options: dict[str, Any] = {"pool_max": int(os.environ.get("RGS_SHADOW_PG_POOL", "10"))}
    if inline:  # one decision at a time per process: each one must end within its budget
        options["decision_budget_s"] = INLINE_BUDGET_S
    return options


def serve(
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to listen on (port 0: any).")],
    mode: Annotated[str, typer.Option("--mode", help="shadow (answers mocks) or live.")],
    db: Annotated[
        str, typer.Option("--db", help="sqlite:///relative.db, sqlite:////abs.db or postgresql://")
    ],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML configuration (PROTOCOL.md section 7).")
    ] = None,
    snapshot: Annotated[
        Path | None,
        typer.Option("--snapshot", help="CSV player_id,currency,balance: opening balances."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Server processes sharing the socket (postgresql:// only)."),
    ] = 1,
    inline: Annotated[
        bool,
        typer.Option(
            "--inline",
            help="Each process decides one callback at a time on its event loop, without the"
            " thread hand-off: faster with several --workers; see docs/server.md.",
        ),
    ] = False,
) -> None:
    """Run the wallet: callbacks on POST /rgs/{aggregator}, the operator API, /healthz."""
    if mode not in {m.value for m in Mode}:
        raise InputError(f"--mode: {mode!r} is not one of shadow, live")
    if not 1 <= workers <= 64:
        raise InputError(f"--workers: {workers} is not between 1 and 64")
    if workers > 1 and not db.startswith(("postgresql://", "postgres://")):
        raise InputError(
            "--workers: more than one process needs a postgresql:// store"
            " (SQLite has one writer: it is served by one process)"
        )
    host, port = parse_listen(listen)
    wallet_config = load_config(config).require_secrets()
    token = os.environ.get(ADMIN_TOKEN_ENV) or None
    opening = read_snapshot(snapshot, wallet_config.currencies) if snapshot else []
    sock = _bind(host, port)
    serving = _Serving(db, wallet_config, token, sock, mode, inline)
    store: Store | None = None
    try:
        store = open_store(db, **_store_options(db, inline))
        _record_mode(store, mode)
        operator = OperatorApi(store, wallet_config)
        if opening:
            operator.import_snapshot(opening, now_us())
        if workers > 1:
            # Fork with no pool threads and no connections alive: each worker opens its own.
            store.close()
            store = None
            _supervise(workers, serving)
            return
        core = WalletCore(store, wallet_config, mode=Mode(mode), check_timestamps=True)
        _run(core, operator, serving)
    finally:
        sock.close()
        if store is not None:
            store.close()


def _record_mode(store: Store, mode: str) -> None:
    previous = store.get_mode()
    if previous != mode:
        store.set_mode(mode)
        if previous is not None:
            typer.echo(f"rgs-shadow serve: the store was in {previous} mode, now {mode}", err=True)


def _supervise(workers: int, serving: _Serving) -> None:
    """Fork ``workers`` servers on ``serving.sock``; pass signals on; wait for them all."""
    sock, token, mode = serving.sock, serving.token, serving.mode
    parent = os.getpid()
    children: set[int] = set()
    stopping = False

    def stop_all(sig: int, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            try:
                os.kill(pid, sig if sig in (signal.SIGTERM, signal.SIGINT) else signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed = False
    try:
        for number in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the parent's code
                os._exit(_worker(number, parent, serving))
            children.add(pid)
        host, port = sock.getsockname()[:2]
        admin = "on" if token else f"off (set {ADMIN_TOKEN_ENV})"
        print(
            f"rgs-shadow serve: listening on http://{host}:{port} mode={mode}"
            f" operator-api={admin} workers={workers}",
            file=sys.stderr,
            flush=True,
        )
        sock.close()  # the workers hold it; the parent only waits
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            children.discard(pid)
            if os.waitstatus_to_exitcode(status) != 0:
                failed = True
            if not stopping:
                # A worker ended on its own: stop the rest, fail, let the manager restart.
                print(
                    f"rgs-shadow serve: worker {pid} ended"
                    f" (exit {os.waitstatus_to_exitcode(status)}); stopping",
                    file=sys.stderr,
                    flush=True,
                )
                failed = True
                stop_all(signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise ConfigError("serve: a worker failed (see the messages above)")
    print("rgs-shadow serve: stopped", file=sys.stderr, flush=True)


def _worker(number: int, parent: int, serving: _Serving) -> int:
    """One forked server process; its exit status."""
    try:
        os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent only, which passes it on
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            return 1
        store = open_store(serving.db, **_store_options(serving.db, serving.inline))
        try:
            config = serving.config
            core = WalletCore(store, config, mode=Mode(serving.mode), check_timestamps=True)
            _run(core, OperatorApi(store, config), serving, announce=False)
        finally:
            store.close()
        return 0
    except BaseException as exc:  # noqa: BLE001 - a worker reports and exits, never unwinds
        print(f"rgs-shadow serve: worker {number}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        sys.stderr.flush()


def _run(
    core: WalletCore, operator: OperatorApi, serving: _Serving, *, announce: bool = True
) -> None:
    import uvicorn

    from wallet_core.asgi import create_app

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config, token, sock, mode = serving.config, serving.token, serving.sock, serving.mode
    app = create_app(core, operator, config, token, inline=serving.inline)

    class Server(uvicorn.Server):
        """uvicorn re-raises a caught SIGTERM once it has shut down, so the process would die
        by the signal before the store is closed; finish normally instead (exit 0).  A
        second signal still forces the exit without waiting for requests in flight."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

    server = Server(
        uvicorn.Config(
            app,
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_S,
            timeout_keep_alive=30,
            proxy_headers=False,  # nothing here reads the client's address: no per-request pass
        )
    )
    host, port = sock.getsockname()[:2]
    admin = "on" if token else f"off (set {ADMIN_TOKEN_ENV})"
    if announce:
        print(
            f"rgs-shadow serve: listening on http://{host}:{port} mode={mode} operator-api={admin}",
            file=sys.stderr,
            flush=True,
        )
    # Everything alive now (the imports, the app, the config) lives as long as the process:
    # out of the collector's sight, full collections walk only what requests create.
    gc.freeze()
    server.run(sockets=[sock])
    if not server.started:
        raise ConfigError("serve: the server did not start (see the messages above)")
    if announce:
        print("rgs-shadow serve: stopped", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
