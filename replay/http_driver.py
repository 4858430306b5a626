"""Drive a running wallet over HTTP: concurrent across players, ordered within each.

Each player gets its own queue and worker, so one player's callbacks reach the
wallet strictly in captured order (a bet before its win, a retry after its
first send) while other players proceed in parallel, up to ``concurrency``
requests in flight.  ``--speed 1x`` keeps the captured gaps, ``Nx`` divides
them, ``max`` sends as fast as the wallet answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from wallet_core.codes import HTTP_STATUS, Code
from wallet_core.dialects import Dialect, GenericDialect, ParseError
from wallet_core.model import Decision, Outcome

from .decisions import DecisionWriter, decision_row
from .reader import Captured

if TYPE_CHECKING:
    from .run import ReplayOptions, ReplaySummary, Router

__all__ = ["drive_http"]

_FORWARDED = {"content-type", "x-rgs-signature"}
_FALLBACK = GenericDialect()
_QUEUE_BOUND = 256


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
    limits = httpx.Limits(max_connections=options.concurrency)
    timeout = httpx.Timeout(10.0)
    gate = asyncio.Semaphore(options.concurrency)
    queues: dict[str, asyncio.Queue[tuple[int, Captured, str | None] | None]] = {}
    workers: list[asyncio.Task[None]] = []
    async with httpx.AsyncClient(
        base_url=options.target.rstrip("/"), limits=limits, timeout=timeout
    ) as client:

        async def worker(queue: asyncio.Queue[tuple[int, Captured, str | None] | None]) -> None:
            while (item := await queue.get()) is not None:
                seq, row, marker = item
                async with gate:
                    row_out = await _send(client, options, seq, row, marker, router)
                writer.add(row_out)
                summary.count(row_out["outcome"], row_out["code"], marker)
                if progress is not None:
                    progress(1)

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
            queue = queues.get(key)
            if queue is None:
                queue = queues[key] = asyncio.Queue(_QUEUE_BOUND)
                workers.append(asyncio.create_task(worker(queue)))
            await queue.put((seq, row, marker))
        for queue in queues.values():
            await queue.put(None)
        await asyncio.gather(*workers)


async def _send(
    client: httpx.AsyncClient,
    options: ReplayOptions,
    seq: int,
    row: Captured,
    marker: str | None,
    router: Router,
) -> dict[str, Any]:
    config = options.config
    agg = config.aggregators.get(row.aggregator)
    dialect: Dialect = agg.dialect if agg else _FALLBACK
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
    return out


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
