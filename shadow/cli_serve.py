"""``rgs-shadow serve``: the wallet as an HTTP service (Starlette on uvicorn).

Everything that can be wrong with the command line, the configuration or the store
is found before the socket opens, and reported as one line with exit 2.  The socket
is bound here rather than by uvicorn so a busy port is such a line too, and so
``--listen 127.0.0.1:0`` works: the chosen port is printed on the ready line, which
tests and scripts read.  uvicorn's own SIGTERM/SIGINT handling stops accepting,
finishes the requests in flight, and returns; the store is closed after that.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

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


def _store_options(db: str) -> dict[str, Any]:
    if db.startswith("sqlite:"):
        # One writer: a request that cannot get the lock in 1.5 s answers RETRY_LATER.
        return {"durability": "live", "lock_timeout_s": 1.5}
    return {"pool_max": int(os.environ.get("RGS_SHADOW_PG_POOL", "10"))}


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
) -> None:
    """Run the wallet: callbacks on POST /rgs/{aggregator}, the operator API, /healthz."""
    if mode not in {m.value for m in Mode}:
        raise InputError(f"--mode: {mode!r} is not one of shadow, live")
    host, port = parse_listen(listen)
    wallet_config = load_config(config).require_secrets()
    token = os.environ.get(ADMIN_TOKEN_ENV) or None
    opening = read_snapshot(snapshot, wallet_config.currencies) if snapshot else []
    sock = _bind(host, port)
    store: Store | None = None
    try:
        store = open_store(db, **_store_options(db))
        _record_mode(store, mode)
        operator = OperatorApi(store, wallet_config)
        if opening:
            operator.import_snapshot(opening, now_us())
        core = WalletCore(store, wallet_config, mode=Mode(mode), check_timestamps=True)
        _run(core, operator, wallet_config, token, sock, mode)
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


def _run(
    core: WalletCore,
    operator: OperatorApi,
    config: Any,
    token: str | None,
    sock: socket.socket,
    mode: str,
) -> None:
    import uvicorn

    from wallet_core.asgi import create_app

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(core, operator, config, token)

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
        )
    )
    host, port = sock.getsockname()[:2]
    admin = "on" if token else f"off (set {ADMIN_TOKEN_ENV})"
    print(
        f"rgs-shadow serve: listening on http://{host}:{port} mode={mode} operator-api={admin}",
        file=sys.stderr,
        flush=True,
    )
    server.run(sockets=[sock])
    if not server.started:
        raise ConfigError("serve: the server did not start (see the messages above)")
    print("rgs-shadow serve: stopped", file=sys.stderr, flush=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
