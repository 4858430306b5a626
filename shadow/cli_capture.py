"""``rgs-shadow capture``: the capture addon in a mitmdump reverse proxy.

Why a child process and not mitmproxy embedded: its maintainers support
mitmdump plus an addon, not embedding (mitmproxy issue #5171).  The child is
mitmdump's own start-up with the addon registered directly
(:mod:`shadow.capture_proxy`, cheaper per request than loading it as a
``-s`` script, which keeps working).  This command checks its inputs first
(one line on stderr, exit 2), starts the proxy with this Python, forwards
SIGINT/SIGTERM to it and waits while the addon drains its spool.
"""

from __future__ import annotations

import ctypes
import ipaddress
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from wallet_core.config import load_config
from wallet_core.errors import InputError

from .capture_settings import resolve_settings

__all__ = ["build_command", "parse_listen", "register"]

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``; InputError when malformed."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise InputError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise InputError(f"--listen {value!r}: write an IPv6 address in brackets, [::1]:8080")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise InputError(f"--listen {value!r}: the port must be between 1 and 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(_LABEL.match(part) for part in host.split(".")):
            raise InputError(f"--listen {value!r}: {host!r} is not a host name") from None
    return host, port


def check_upstream(url: str) -> str:
    """The upstream URL if it is an absolute http(s) URL with a host; InputError otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"--upstream {url!r}: the port is not a number in 1-65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--upstream {url!r}: expected an http:// or https:// URL with a host")
    if parts.query or parts.fragment or (parts.path not in ("", "/")):
        raise InputError(f"--upstream {url!r}: give the server only (scheme, host, port)")
    if port == 0:
        raise InputError(f"--upstream {url!r}: the port is not a number in 1-65535")
    return url.rstrip("/")


def warn_if_unreachable(url: str) -> None:
    """A warning, not an error: the wallet may be restarting, and the proxy must be up first."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=1.0):
            pass
    except OSError as exc:
        typer.echo(
            f"rgs-shadow capture: warning: upstream {url} is not reachable now ({exc}); "
            f"callbacks get 502 until it is",
            err=True,
        )


def check_listen_free(host: str, port: int) -> None:
    """Fail early (exit 2) when the address is taken, rather than after mitmdump starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise InputError(
                f"--listen {host}:{port}: cannot listen there ({exc.strerror})"
            ) from None


def check_out_dir(out: Path) -> Path:
    """Create ``out`` if needed and prove it is writable; InputError otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"--out {out}: not a writable directory ({exc.strerror or exc})") from None
    return out.resolve()


def build_command(
    host: str, port: int, upstream: str, out: Path, config: Path | None, sets: list[str]
) -> list[str]:
    """The command line of a mitmdump reverse proxy with the capture addon built in."""
    command = [
        sys.executable,
        "-m",
        "shadow.capture_proxy",
        "--mode",
        f"reverse:{upstream}",
        "--listen-host",
        host,
        "--listen-port",
        str(port),
        "--quiet",
        "--set",
        "flow_detail=0",
        # Lazy: connect upstream when a request arrives, so a request meeting a
        # dead wallet is still read, answered 502 and captured with its error.
        # (Eager, the default, drops the client connection before any request.)
        "--set",
        "connection_strategy=lazy",
        "--set",
        f"capture_dir={out}",
    ]
    if config is not None:
        command += ["--set", f"capture_config={config.resolve()}"]
    for item in sets:
        command += ["--set", item]
    return command


def _die_with_parent() -> None:
    """In the child: get SIGTERM (and drain) if this command dies without forwarding."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the child outlives a killed parent


def capture(
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to accept callbacks on.")],
    upstream: Annotated[str, typer.Option("--upstream", help="The live wallet, http(s)://...")],
    out: Annotated[Path, typer.Option("--out", help="CAPTURE_DIR: the Parquet dataset root.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML: aggregators and \\[capture].")
    ] = None,
    body_cap: Annotated[
        int | None, typer.Option("--body-cap", help="Bytes of each body kept.", min=0)
    ] = None,
    on_write_failure: Annotated[
        str | None,
        typer.Option("--on-write-failure", help="pass (default) or stop: answer 503."),
    ] = None,
    proxy_id: Annotated[
        str | None, typer.Option("--proxy-id", help="Name of this proxy (default: host name).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--set", help="Extra mitmdump option NAME=VALUE (repeatable)."),
    ] = None,
) -> None:
    """Run the capture reverse proxy until SIGINT/SIGTERM, then drain and exit 0."""
    host, port = parse_listen(listen)
    upstream_url = check_upstream(upstream)
    out_dir = check_out_dir(out)
    sets = list(option or [])
    explicit: dict[str, object] = {}
    if body_cap is not None:
        sets.append(f"capture_body_cap={body_cap}")
        explicit["capture_body_cap"] = body_cap
    if on_write_failure is not None:
        sets.append(f"capture_on_write_failure={on_write_failure}")
        explicit["capture_on_write_failure"] = on_write_failure
    if proxy_id is not None:
        sets.append(f"capture_proxy_id={proxy_id}")
        explicit["capture_proxy_id"] = proxy_id
    wallet_config = load_config(config)
    settings = resolve_settings(wallet_config.sections.get("capture", {}), explicit)
    settings.redact_key()  # redaction without its key: one line, exit 2
    check_listen_free(host, port)
    warn_if_unreachable(upstream_url)
    command = build_command(host, port, upstream_url, out_dir, config, sets)
    child = subprocess.Popen(command, preexec_fn=_die_with_parent)  # noqa: PLW1509
    typer.echo(
        f"rgs-shadow capture: {host}:{port} -> {upstream_url}, writing {out_dir} (pid {child.pid})",
        err=True,
    )

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        typer.echo(f"rgs-shadow capture: the proxy exited with status {code}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("capture")(capture)
