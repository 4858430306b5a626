"""Drive a running wallet over HTTP: concurrent across players, ordered within each.

Players are spread over ``concurrency`` lanes by a stable hash; each lane is one
ordered queue, one worker and one keep-alive connection (:mod:`.http_lane`), so one player's
callbacks reach the wallet strictly in captured order (a bet before its win, a
retry after its first send) while other lanes proceed in parallel.  ``--speed 1x`` keeps the captured gaps, ``Nx`` divides
them, ``max`` sends as fast as the wallet answers.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from wallet_core.codes import HTTP_STATUS, Code
from wallet_core.dialects import Dialect, ParseError
from wallet_core.model import Decision, Outcome

from .decisions import DecisionRow, DecisionWriter, decision_row
from .http_lane import LaneTransport
from .reader import Captured

if TYPE_CHECKING:
    from .run import ReplayOptions, ReplaySummary, Router

__all__ = ["drive_http"]

_FORWARDED = {"content-type", "x-rgs-signature"}
_QUEUE_BOUND = 256
#: How long one callback may take to be answered before it is recorded as an error.
_TIMEOUT_S = 10.0


def drive_http(
    options: ReplayOptions,
    stream: Iterator[tuple[Captured, str | None]],
    router: Router,
    writer: DecisionWriter,
    summary: ReplaySummary,
    progress: Callable[[int], None] | None,
) -> None:
    asyncio.run(_drive(options, stream, router, writer, summary, progress))


async def _drive(
    options: ReplayOptions,
    stream: Iterator[tuple[Captured, str | None]],
    router: Router,
    writer: DecisionWriter,
    summary: ReplaySummary,
    progress: Callable[[int], None] | None,
) -> None:
    assert options.target is not None
    lanes = max(1, options.concurrency)
    queues: list[asyncio.Queue[tuple[int, Captured, str | None] | None]] = [
        asyncio.Queue(_QUEUE_BOUND) for _ in range(lanes)
    ]

    # One TLS context for every lane: making one costs about 20 ms of CPU, and each
    # client would otherwise make its own (0.6 s of a 10,000-callback run at 32 lanes).
    tls = ssl.create_default_context()

    async def lane(queue: asyncio.Queue[tuple[int, Captured, str | None] | None]) -> None:
        # One client and one connection per lane (see :mod:`.http_lane`).
        async with httpx.AsyncClient(
            base_url=options.target.rstrip("/") if options.target else "",
            transport=LaneTransport(tls=tls, timeout=_TIMEOUT_S),
            verify=tls,
        ) as client:
            while (item := await queue.get()) is not None:
                seq, row, marker = item
                row_out, decision = await _send(client, options, seq, row, marker, router)
                writer.add(row_out)
                summary.count(decision.outcome.value, decision.code.value, marker)
                if progress is not None:
                    progress(1)

    workers = [asyncio.create_task(lane(q)) for q in queues]
    start = time.monotonic()
    first_at: int | None = None
    for seq, (row, marker) in enumerate(stream):
        if options.speed:
            first_at = row.captured_at_us if first_at is None else first_at
            due = start + (row.captured_at_us - first_at) / 1e6 / options.speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        key = router.player(row)
        await queues[zlib.crc32(key.encode("utf-8", "surrogatepass")) % lanes].put(
            (seq, row, marker)
        )
    for queue in queues:
        await queue.put(None)
    await asyncio.gather(*workers)


async def _send(
    client: httpx.AsyncClient,
    options: ReplayOptions,
    seq: int,
    row: Captured,
    marker: str | None,
    router: Router,
) -> tuple[DecisionRow, Decision]:
    config = options.config
    dialect = router.dialect(row.aggregator)
    headers = {k: v for k, v in row.headers.items() if k in _FORWARDED}
    try:
        response = await client.post(f"/rgs/{row.aggregator}", content=row.body, headers=headers)
        status, body, error = response.status_code, response.content, None
    except httpx.HTTPError as exc:
        status, body, error = None, None, f"{type(exc).__name__}: {exc}"
    decision = _decision_of(dialect, config, row, status, body, error)
    out = decision_row(
        seq,
        row,
        decision,
        dialect,
        config.currencies,
        router.account(row)[1],
        "live",
        marker,
        decision.ref_transaction_id,
    )
    return out, decision


def _decision_of(
    dialect: Dialect,
    config: Any,
    row: Captured,
    status: int | None,
    body: bytes | None,
    error: str | None,
) -> Decision:
    """The target's answer, as a decision row's wallet side."""
    try:
        cb = dialect.parse(row.body, config.currencies)
        fields: dict[str, Any] = {
            "event": cb.event.value,
            "transaction_id": cb.transaction_id,
            "player_id": cb.player_id,
            "session_id": cb.session_id,
            "round_id": cb.round_id,
            "currency": cb.currency,
            "amount_minor": cb.amount_minor,
            "ref_transaction_id": cb.ref_transaction_id,
        }
    except ParseError:
        txid, event = dialect.identify(row.body)
        fields = {"event": event, "transaction_id": txid}
    answer = dialect.read_answer(status, body, fields.get("currency"), config.currencies)
    known = answer.code is not None and answer.code in Code.__members__
    code = Code(answer.code) if known and answer.code else Code.RETRY_LATER
    outcome = Outcome.APPLIED if answer.accepted else Outcome.REJECTED
    return Decision(
        outcome,
        code,
        status or HTTP_STATUS[code],
        balance_after=answer.balance_minor,
        message=error or "",
        **fields,
    )
