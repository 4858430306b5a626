"""The lane transport against a real socket server: framing, keep-alive, reconnects, errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import httpx
import pytest

from replay.http_lane import LaneTransport

Answer = Callable[[bytes], bytes]


def _ok(body: bytes, *extra: str) -> bytes:
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _serve(answer: Answer, test: Callable[[str, list[int]], Awaitable[None]]) -> list[int]:
    """Run ``test(url, connections)``; each request gets ``answer(request_body)``.

    ``connections`` counts requests per accepted connection.  An answer that ends with
    ``b"<close>"`` is sent without it and the server closes the connection.
    """
    connections: list[int] = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(0)
        index = len(connections) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                connections[index] += 1
                data = answer(body)
                close = data.endswith(b"<close>")
                writer.write(data.removesuffix(b"<close>"))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await test(f"http://127.0.0.1:{port}", connections)
    return connections


async def _posts(url: str, bodies: list[bytes], timeout: float = 5.0) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, transport=LaneTransport(timeout=timeout)) as c:
        return [await c.post("/rgs/default", content=b) for b in bodies]


def test_one_keep_alive_connection_carries_every_request() -> None:
    async def test(url: str, connections: list[int]) -> None:
        answers = await _posts(url, [b"a", b"bb", b"ccc"])
        assert [r.content for r in answers] == [b"echo:a", b"echo:bb", b"echo:ccc"]
        assert [r.status_code for r in answers] == [200] * 3
        assert answers[0].headers["x-lane"] == "1"

    used = asyncio.run(_serve(lambda body: _ok(b"echo:" + body, "X-Lane: 1"), test))
    assert used == [3]


def test_a_server_that_closes_after_each_answer_gets_a_new_connection_each_time() -> None:
    async def test(url: str, connections: list[int]) -> None:
        answers = await _posts(url, [b"a", b"b", b"c"])
        assert [r.content for r in answers] == [b"a", b"b", b"c"]

    used = asyncio.run(_serve(lambda body: _ok(body, "Connection: close") + b"<close>", test))
    assert used == [1, 1, 1]


def test_http_1_0_answers_and_bodies_ended_by_the_connection() -> None:
    def answer(body: bytes) -> bytes:
        return b"HTTP/1.0 201 Created\r\nContent-Type: text/plain\r\n\r\n" + body * 2 + b"<close>"

    async def test(url: str, connections: list[int]) -> None:
        answers = await _posts(url, [b"x", b"yz"])
        assert [(r.status_code, r.content) for r in answers] == [(201, b"xx"), (201, b"yzyz")]

    assert asyncio.run(_serve(answer, test)) == [1, 1]


def test_chunked_bodies_are_joined() -> None:
    def answer(body: bytes) -> bytes:
        chunks = b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks

    async def test(url: str, connections: list[int]) -> None:
        answers = await _posts(url, [b"1", b"2"])
        assert [r.content for r in answers] == [b"abcde", b"abcde"]

    assert asyncio.run(_serve(answer, test)) == [2]


def test_an_idle_connection_the_server_closed_is_replaced_before_sending() -> None:
    async def test(url: str, connections: list[int]) -> None:
        async with httpx.AsyncClient(base_url=url, transport=LaneTransport()) as client:
            first = await client.post("/x", content=b"1")
            await asyncio.sleep(0.1)  # the server has closed it meanwhile
            second = await client.post("/x", content=b"2")
        assert (first.content, second.content) == (b"1", b"2")

    # The server answers with keep-alive framing, then closes anyway.
    assert asyncio.run(_serve(lambda body: _ok(body) + b"<close>", test)) == [1, 1]


def test_a_slow_answer_is_a_read_timeout_and_the_lane_recovers() -> None:
    calls = {"n": 0}

    def answer(body: bytes) -> bytes:
        calls["n"] += 1
        return b"" if calls["n"] == 1 else _ok(body)  # the first is never answered

    async def test(url: str, connections: list[int]) -> None:
        async with httpx.AsyncClient(base_url=url, transport=LaneTransport(timeout=0.3)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/x", content=b"1")
            again = await client.post("/x", content=b"2")
        assert again.content == b"2"

    assert asyncio.run(_serve(answer, test)) == [1, 1]


def test_errors_are_httpx_errors() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(httpx.ConnectError):
        asyncio.run(_posts(f"http://127.0.0.1:{port}", [b"1"]))

    async def test(url: str, connections: list[int]) -> None:
        with pytest.raises(httpx.ReadError):
            await _posts(url, [b"1"])

    asyncio.run(_serve(lambda body: b"SMTP ready\r\n\r\n", test))
