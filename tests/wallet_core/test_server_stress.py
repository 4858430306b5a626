"""The issue's must-show points against a real ``rgs-shadow serve`` on SQLite and PostgreSQL.

Each test starts the server in a subprocess on 127.0.0.1 (``tests/_server.py``),
drives it over HTTP with httpx, stops it, then opens the store itself to check the
ledger.  A ``RETRY_LATER`` answer is what an aggregator retries, so the storms
retry it (bounded) and count how often it happened; every other answer is final.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests._server import Server, cli, snapshot_file
from wallet_core.store import Store, open_store
from wallet_core.testing import CallbackFactory

pytestmark = pytest.mark.slow

Request = tuple[dict[str, str], bytes]
Answer = tuple[int, bytes]


def _factory(session: str = "s1", player: str = "p1") -> CallbackFactory:
    return CallbackFactory(defaults={"session_id": session, "player_id": player, "currency": "EUR"})


def _open(server: Server, session: str, player: str, opening: str) -> None:
    doc = {"session_id": session, "player_id": player, "currency": "EUR", "aggregator": "default"}
    assert server.admin("POST", "/admin/sessions", json=doc).status_code == 201
    deposit = {
        "reference": f"open-{player}",
        "player_id": player,
        "currency": "EUR",
        "amount": opening,
    }
    assert server.admin("POST", "/admin/adjustments", json=deposit).status_code == 200


LATENCIES: list[float] = []  # seconds per HTTP exchange, printed by the tests (never asserted)


def _latency_line() -> str:
    ordered = sorted(LATENCIES)
    LATENCIES.clear()
    if not ordered:
        return "no requests"

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return f"p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {ordered[-1] * 1000:.0f} ms"


async def _send_all(
    url: str, requests: list[Request], retries: int = 40
) -> tuple[list[Answer], int]:
    """Send every request at once; retry RETRY_LATER (bounded). Returns answers and retry count."""
    retried = 0
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(request: Request) -> Answer:
            nonlocal retried
            for _ in range(retries):
                started = time.perf_counter()
                response = await client.post("/rgs/default", content=request[1], headers=request[0])
                LATENCIES.append(time.perf_counter() - started)
                if response.status_code != 503:
                    return response.status_code, response.content
                assert b'"RETRY_LATER"' in response.content
                assert response.headers["retry-after"]
                retried += 1
                await asyncio.sleep(0.05)
            return response.status_code, response.content

        answers = await asyncio.gather(*(one(r) for r in requests))
    return list(answers), retried


def _checked_store(url: str) -> Iterator[Store]:
    store = open_store(url, create=False)
    try:
        yield store
    finally:
        store.close()


def _ledger_rows(store: Store, txid: str) -> int:
    ((count,),) = store.execute("SELECT count(*) FROM ledger WHERE transaction_id = ?", (txid,))  # type: ignore[attr-defined]
    return int(count)


def _serving(store_url: str, inline: bool) -> tuple[str, ...]:
    """``serve`` arguments: the default pool, or ``--inline`` (two workers on PostgreSQL)."""
    if not inline:
        return ()
    return ("--inline",) if store_url.startswith("sqlite") else ("--inline", "--workers", "2")


def _audit_verify(db: str) -> None:
    result = cli("audit", "verify", "--db", db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "intact" in result.stdout


# -- 1. duplicate storm ------------------------------------------------------------------------


@pytest.mark.parametrize("inline", [False, True], ids=["pool", "inline"])
def test_duplicate_storm_applies_once_with_identical_answers(store_url: str, inline: bool) -> None:
    factory = _factory()
    bet = factory.make("bet", transaction_id="storm-bet", round_id="r1", amount="7.50")
    win = factory.make("win", transaction_id="storm-win", round_id="r1", amount="20.25")
    with Server(store_url, "live", *_serving(store_url, inline)) as server:
        _open(server, "s1", "p1", "100.00")
        bets, bet_retries = asyncio.run(_send_all(server.url, [bet] * 50))
        wins, win_retries = asyncio.run(_send_all(server.url, [win] * 50))
        assert server.balance_minor("p1") == "112.75"
    assert server.stop() == 0
    assert len(set(bets)) == 1 and bets[0][0] == 200 and b'"92.50"' in bets[0][1]
    assert len(set(wins)) == 1 and wins[0][0] == 200 and b'"112.75"' in wins[0][1]
    for store in _checked_store(store_url):
        assert _ledger_rows(store, "storm-bet") == 1 and _ledger_rows(store, "storm-win") == 1
        assert store.balances() == {("p1", "EUR"): 11_275} == store.ledger_sums()
    _audit_verify(store_url)
    print(f"duplicate storm: {bet_retries + win_retries} retried; {_latency_line()}")


# -- 2. hot player -----------------------------------------------------------------------------


@pytest.mark.parametrize("inline", [False, True], ids=["pool", "inline"])
def test_hot_player_never_overdraws(store_url: str, inline: bool) -> None:
    rng = random.Random(20261125)
    factory = _factory()
    amounts = [rng.randint(1, 40) * 25 for _ in range(200)]  # 0.25 .. 10.00 EUR
    bets = [
        factory.make(
            "bet",
            transaction_id=f"hot-{i}",
            round_id=f"r{i % 10}",
            amount=f"{a // 100}.{a % 100:02d}",
        )
        for i, a in enumerate(amounts)
    ]
    opening = 25_000  # covers roughly a quarter of the bets
    with Server(store_url, "live", *_serving(store_url, inline)) as server:
        _open(server, "s1", "p1", "250.00")
        answers, retries = asyncio.run(_send_all(server.url, bets))
    assert server.stop() == 0
    accepted = [a for a, (status, _) in zip(amounts, answers, strict=True) if status == 200]
    refused = [body for status, body in answers if status != 200]
    assert all(b'"INSUFFICIENT_FUNDS"' in body for body in refused), Counter(refused)
    assert accepted and refused
    assert sum(accepted) <= opening
    assert min(amounts[i] for i, (s, _) in enumerate(answers) if s != 200) > opening - sum(accepted)
    for store in _checked_store(store_url):
        assert store.balances() == {("p1", "EUR"): opening - sum(accepted)} == store.ledger_sums()
        rows = store.execute("SELECT min(balance_after), count(*) FROM ledger WHERE kind = 'bet'")  # type: ignore[attr-defined]
        ((lowest, count),) = rows
        assert int(lowest) >= 0 and int(count) == len(accepted)  # type: ignore[call-overload]
    _audit_verify(store_url)
    print(
        f"hot player: {len(accepted)} accepted, {len(refused)} refused, {retries} retried;"
        f" {_latency_line()}"
    )


# -- 3. kill -9 under load ---------------------------------------------------------------------


def _load(players: int = 8, rounds: int = 12) -> list[Request]:
    """Bets, wins and refunds of several players, interleaved: the load of the crash test."""
    rng = random.Random(7)
    per_player: list[list[Request]] = []
    for p in range(players):
        factory = _factory(f"s{p}", f"p{p}")
        calls: list[Request] = []
        for r in range(rounds):
            bet_id, amount = f"b{p}-{r}", f"{rng.randint(1, 9)}.00"
            calls.append(
                factory.make("bet", transaction_id=bet_id, round_id=f"r{p}-{r}", amount=amount)
            )
            if r % 4 == 3:
                calls.append(
                    factory.make(
                        "refund",
                        transaction_id=f"x{p}-{r}",
                        round_id=f"r{p}-{r}",
                        amount=amount,
                        ref_transaction_id=bet_id,
                    )
                )
            else:
                calls.append(
                    factory.make(
                        "win",
                        transaction_id=f"w{p}-{r}",
                        round_id=f"r{p}-{r}",
                        amount=f"{rng.randint(0, 12)}.50",
                    )
                )
        per_player.append(calls)
    return [c for group in zip(*per_player, strict=True) for c in group]


async def _load_until_killed(
    server: Server, load: list[Request], kill_after: int
) -> list[Answer | None]:
    answers: list[Answer | None] = [None] * len(load)
    done = 0
    gate = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

        async def one(i: int) -> None:
            nonlocal done
            async with gate:
                try:
                    response = await client.post(
                        "/rgs/default", content=load[i][1], headers=load[i][0]
                    )
                except httpx.HTTPError:
                    return
                answers[i] = (response.status_code, response.content)
                done += 1
                if done == kill_after:
                    server.kill9()

        await asyncio.gather(*(one(i) for i in range(len(load))))
    return answers


def test_kill_9_under_load_loses_nothing_acknowledged(store_url: str, tmp_path: Path) -> None:
    load = _load()
    snapshot = snapshot_file(
        tmp_path / "opening.csv", [(f"p{p}", "EUR", "40.00") for p in range(8)]
    )
    first = Server(store_url, "live", "--snapshot", str(snapshot)).start()
    try:
        for p in range(8):
            doc = {
                "session_id": f"s{p}",
                "player_id": f"p{p}",
                "currency": "EUR",
                "aggregator": "default",
            }
            assert first.admin("POST", "/admin/sessions", json=doc).status_code == 201
        answers = asyncio.run(_load_until_killed(first, load, kill_after=len(load) // 2))
    finally:
        first.stop()
    assert first.proc is not None and first.proc.returncode == -9
    answered = {i: a for i, a in enumerate(answers) if a is not None and a[0] != 503}
    assert len(load) // 2 <= len(answered) < len(load)

    for store in _checked_store(store_url):
        _assert_nothing_half_applied(store)
        for i, (status, _) in answered.items():
            if status == 200:
                txid = _txid(load[i][1])
                ((stored,),) = store.execute(
                    "SELECT status FROM txns WHERE transaction_id = ?", (txid,)
                )  # type: ignore[attr-defined]
                assert stored == 200, txid
    _audit_verify(store_url)

    with Server(store_url, "live", "--snapshot", str(snapshot)) as second:
        resent, _ = asyncio.run(_send_all(second.url, load))
        again, _ = asyncio.run(_send_all(second.url, load))
    assert second.stop() == 0
    for i, answer in answered.items():
        assert resent[i] == answer, _txid(load[i][1])
    assert again == resent
    for store in _checked_store(store_url):
        _assert_nothing_half_applied(store)
        assert store.balances() == store.ledger_sums()
    _audit_verify(store_url)
    print(f"crash: {len(answered)} of {len(load)} answered before kill; resend {_latency_line()}")


def _txid(body: bytes) -> str:
    import json

    return str(json.loads(body)["transaction_id"])


def _assert_nothing_half_applied(store: Store) -> None:
    """Every applied callback has exactly one ledger row and an audit row, and vice versa."""
    x = store.execute  # type: ignore[attr-defined]
    applied = {str(t) for (t,) in x("SELECT transaction_id FROM txns WHERE applied = ?", (True,))}
    moved = Counter(
        str(t) for (t,) in x("SELECT transaction_id FROM ledger WHERE kind <> ?", ("adjustment",))
    )
    assert all(n == 1 for n in moved.values()), moved.most_common(3)
    zero_wins = {str(t) for (t,) in x("SELECT transaction_id FROM txns WHERE amount_minor = 0")}
    assert set(moved) == applied - zero_wins
    audited = "".join(str(d) for (d,) in x("SELECT decision FROM audit WHERE kind = 'callback'"))
    for (txid,) in x("SELECT transaction_id FROM txns WHERE fingerprint IS NOT NULL"):
        assert f'"transaction_id":"{txid}"' in audited
    assert store.balances() == store.ledger_sums()


# -- 4. a stalled database under --inline -------------------------------------------------------


@pytest.mark.postgres
def test_inline_answers_within_3_s_while_postgresql_stalls(pg_store_url: str) -> None:
    """PROTOCOL.md section 1: answers within 3 s. ``--inline`` decides one callback at a time,
    so without its shedding the eighth of eight callbacks stalled on a lock would wait for the
    seven before it (each ends at ``lock_timeout``, 1 s): about 8 s."""
    import psycopg

    factory = _factory()
    bets = [
        factory.make("bet", transaction_id=f"stall-{i}", round_id="r1", amount="1.00")
        for i in range(8)
    ]
    with Server(pg_store_url, "live", "--inline") as server:
        _open(server, "s1", "p1", "100.00")
        holder = psycopg.connect(pg_store_url)
        try:
            holder.execute("SELECT 1 FROM audit_head FOR UPDATE")  # every writer queues here

            async def once() -> list[tuple[int, bytes, float]]:
                limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)
                async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:

                    async def one(request: Request) -> tuple[int, bytes, float]:
                        started = time.perf_counter()
                        r = await c.post("/rgs/default", content=request[1], headers=request[0])
                        return r.status_code, r.content, time.perf_counter() - started

                    return list(await asyncio.gather(*(one(b) for b in bets)))

            stalled = asyncio.run(once())
        finally:
            holder.rollback()
            holder.close()
        assert all(status == 503 and b'"RETRY_LATER"' in body for status, body, _ in stalled)
        assert max(seconds for _, _, seconds in stalled) < 3.0, stalled
        # Nothing was written: sent again, each bet applies once.
        answers, _ = asyncio.run(_send_all(server.url, bets))
        assert [status for status, _ in answers] == [200] * 8
        assert server.balance_minor("p1") == "92.00"
    assert server.stop() == 0
    _audit_verify(pg_store_url)
