"""One lane's HTTP/1.1 connection for ``--target``: an httpx transport without the pool.

A lane sends one request at a time on one keep-alive connection (see
:mod:`.http_driver`), so httpcore's connection pool, its locks and the anyio
layer under them do nothing for it, yet they were about a third of the replay's
CPU per callback, and the replay client, not the wallet, set the pace.  This
transport speaks just the HTTP/1.1 a wallet answers with: a status line,
headers, then a body framed by ``Content-Length``, by chunks, or by the end of
the connection.  It reconnects when the server closed the connection (HTTP/1.0
servers close after every answer) and never resends a request that may have
reached the server.  Errors are httpx's own exceptions, so callers see no
difference.
"""

from __future__ import annotations

import asyncio
import ssl

import httpx

__all__ = ["LaneTransport"]

_MAX_HEAD = 64 * 1024


class _Unconnected(Exception):
    """No connection could be made; ``__cause__`` says why."""


class LaneTransport(httpx.AsyncBaseTransport):
    """One connection, one request at a time; httpx's client drives it."""

    def __init__(self, *, tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        self._tls = tls
        self._timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            async with asyncio.timeout(self._timeout):  # no extra task, unlike wait_for
                return await self._exchange(request)
        except TimeoutError:  # before OSError, of which it is a kind
            await self._drop()
            raise httpx.ReadTimeout("no answer in time", request=request) from None
        except _Unconnected as exc:
            await self._drop()
            raise httpx.ConnectError(str(exc.__cause__), request=request) from None
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
            await self._drop()
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from None

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        try:
            reader, writer = await self._connection(request.url)
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS refused: nothing sent
            raise _Unconnected from exc
        writer.write(_head(request) + await request.aread())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")  # longer than _MAX_HEAD: LimitOverrunError
        lines = head.decode("latin-1").split("\r\n")
        version, status = _status_line(lines[0])
        headers = [_header(line) for line in lines[1:] if line]
        fields = {name.lower(): value.strip().lower() for name, value in headers}
        if "chunked" in fields.get("transfer-encoding", ""):
            body = await _chunked(reader)
        elif "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:  # framed by the end of the connection
            body = await reader.read()
            fields["connection"] = "close"
        if fields.get("connection") == "close" or (
            version == "HTTP/1.0" and fields.get("connection") != "keep-alive"
        ):
            await self._drop()
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(body), request=request
        )

    async def _connection(
        self, url: httpx.URL
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            if not self._reader.at_eof() and not self._writer.is_closing():
                return self._reader, self._writer
            await self._drop()
        https = url.scheme == "https"
        port = url.port or (443 if https else 80)
        self._reader, self._writer = await asyncio.open_connection(
            url.host,
            port,
            ssl=(self._tls or ssl.create_default_context()) if https else None,
            limit=_MAX_HEAD,
        )
        return self._reader, self._writer

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass

    async def aclose(self) -> None:
        await self._drop()


def _head(request: httpx.Request) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _status_line(line: str) -> tuple[str, int]:
    version, _, rest = line.partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1 answer: {line[:40]!r}")
    return version, int(rest[:3])


def _header(line: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not sep:
        raise ValueError(f"bad header line: {line[:40]!r}")
    return name, value.strip()


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
