"""A small HTTP/1.1 load generator for the wallet benchmarks (standard library only).

Run as its own process so the load it puts on the CPU is not the server's:

    python bench/_load.py REQUESTS_FILE --port P --mode open --rate 500 --seconds 10
    python bench/_load.py REQUESTS_FILE --port P --mode closed --connections 16 --seconds 10

``REQUESTS_FILE`` holds complete, pre-signed HTTP requests (see :func:`write_requests`),
each sent at most once, so every callback is a new transaction, never an idempotent
repeat.  Keep-alive connections throughout.

* ``closed``: each connection sends its next request when the previous answer is
  in; the rate is what the server sustains.
* ``open``: requests are due at a fixed rate whatever the server does; latency is
  measured from when a request was *due*, not when a free connection sent it, so a
  stalled server shows up in the percentiles (no coordinated omission).

The result is one JSON line on stdout: counts, elapsed, rate, p50/p99/max latency,
HTTP statuses and wallet codes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["http_request", "percentile", "read_requests", "write_requests"]


def http_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One complete HTTP/1.1 POST, keep-alive."""
    head = [f"POST {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def write_requests(path: Path, requests: Iterable[bytes]) -> int:
    """Length-prefixed requests in a file; returns how many."""
    n = 0
    with open(path, "wb") as out:
        for request in requests:
            out.write(struct.pack("<I", len(request)))
            out.write(request)
            n += 1
    return n


def read_requests(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    out, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from("<I", data, at)
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()
        self.errors = 0

    def answer(self, latency: float, status: int, body: bytes) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        try:
            doc = json.loads(body)
            self.codes[doc.get("code") or doc.get("status") or "?"] += 1
        except ValueError:
            self.codes["not-json"] += 1


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _closed(
    port: int, requests: list[bytes], connections: int, seconds: float, tally: _Tally
) -> float:
    it = iter(requests)
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in it:
                if time.perf_counter() >= deadline:
                    return
                start = time.perf_counter()
                try:
                    status, body = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError):
                    tally.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                tally.answer(time.perf_counter() - start, status, body)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return time.perf_counter() - start


async def _open(
    port: int,
    requests: list[bytes],
    rate: float,
    seconds: float,
    connections: int,
    tally: _Tally,
) -> float:
    total = min(len(requests), int(rate * seconds))
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await due.get()) is not None:
                at, request = item
                try:
                    status, body = await _exchange(reader, writer, request)
                except (OSError, asyncio.IncompleteReadError):
                    tally.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                tally.answer(time.perf_counter() - at, status, body)
        finally:
            writer.close()

    clients = [asyncio.create_task(client()) for _ in range(connections)]
    start = time.perf_counter()
    for k in range(total):
        at = start + k / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((at, requests[k]))
    for _ in clients:
        due.put_nowait(None)
    await asyncio.gather(*clients)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    requests = read_requests(args.requests)[args.skip :]
    if args.count:
        requests = requests[: args.count]
    tally = _Tally()
    if args.mode == "closed":
        elapsed = asyncio.run(_closed(args.port, requests, args.connections, args.seconds, tally))
    else:
        elapsed = asyncio.run(
            _open(args.port, requests, args.rate, args.seconds, args.connections, tally)
        )
    lat = tally.latencies
    return {
        "mode": args.mode,
        "answered": len(lat),
        "errors": tally.errors,
        "elapsed_s": elapsed,
        "rate": len(lat) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "max_ms": max(lat, default=float("nan")) * 1000,
        "pool_exhausted": len(lat) + tally.errors >= len(requests),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "codes": dict(tally.codes.most_common()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requests", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("open", "closed"), required=True)
    parser.add_argument("--rate", type=float, default=500.0, help="open loop: requests/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--skip", type=int, default=0, help="start at this request of the file")
    parser.add_argument("--count", type=int, default=0, help="send at most this many (0: all)")
    print(json.dumps(run(parser.parse_args())), flush=True)


if __name__ == "__main__":
    main()
