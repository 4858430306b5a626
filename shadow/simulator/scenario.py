"""The aggregator's game loop: sessions, rounds, retries, refunds and the awkward cases.

Deterministic from the seed (which players play which rounds, stakes, wins and
where the awkward cases fall); only the wall-clock timestamps differ between
runs.  What the aggregator considers final for each transaction becomes the
settlement export.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from wallet_core.money import CurrencyTable, MoneyError, parse_amount

from .client import AggregatorClient, Answer
from .export import ExportRow
from .population import Player, stake, win_amount

__all__ = ["Operator", "Simulation"]

TABLE = CurrencyTable()
RETRY_PAUSE_S = 0.2
MAX_TRIES = 5


class Operator:
    """The operator API of the wallet (sessions and opening balances), when one is given."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=url.rstrip("/"), timeout=10, headers={"authorization": f"Bearer {token}"}
        )

    def open_session(self, session_id: str, player: Player, aggregator: str) -> None:
        self.client.post(
            "/admin/sessions",
            json={
                "session_id": session_id,
                "player_id": player.player_id,
                "currency": player.currency,
                "aggregator": aggregator,
            },
        ).raise_for_status()

    def deposit(self, reference: str, player: Player) -> None:
        self.client.post(
            "/admin/adjustments",
            json={
                "reference": reference,
                "player_id": player.player_id,
                "currency": player.currency,
                "amount": player.money(player.opening_minor),
            },
        ).raise_for_status()


@dataclass
class Simulation:
    client: AggregatorClient
    players: list[Player]
    rng: random.Random
    prefix: str
    aggregator: str
    operator: Operator | None = None
    session_timeout_s: float = 3.0
    export: dict[str, ExportRow] = field(default_factory=dict)
    scenarios: dict[str, list[str]] = field(default_factory=dict)
    _sessions: dict[str, str] = field(default_factory=dict)
    _balances: dict[str, int] = field(default_factory=dict)
    _last_seen: dict[str, float] = field(default_factory=dict)
    _count: int = 0

    # -- helpers ----------------------------------------------------------------------------
    def _next_id(self, kind: str) -> str:
        self._count += 1
        return f"{self.prefix}-{kind}-{self._count:05d}"

    def _fresh_session(self, player: Player) -> None:
        """The player (re)launches the game when they have no session or it went idle."""
        last = self._last_seen.get(player.player_id)
        idle = last is None or time.monotonic() - last > self.session_timeout_s / 2
        if player.player_id not in self._sessions or idle:
            self.start_session(player)

    def _body(self, event: str, player: Player, **fields: Any) -> bytes:
        self._last_seen[player.player_id] = time.monotonic()
        doc = {
            "event": event,
            "session_id": self._sessions[player.player_id],
            "player_id": player.player_id,
            "currency": player.currency,
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            **fields,
        }
        return self.client.sign(doc)

    def _deliver(self, body: bytes, *, give_up: bool = False) -> Answer:
        """Send; on a 5xx (or a timeout, unless ``give_up``) resend the same bytes."""
        answer = self.client.send(body)
        tries = 1
        while answer.transient and tries < MAX_TRIES and not (give_up and answer.status is None):
            time.sleep(RETRY_PAUSE_S)
            answer = self.client.send(body)
            tries += 1
        return answer

    def _seen_balance(self, player: Player, answer: Answer) -> None:
        text = answer.doc.get("balance")
        if isinstance(text, str):
            try:
                self._balances[player.player_id] = parse_amount(
                    text, TABLE.exponent(player.currency), allow_negative=True
                )
            except MoneyError:
                pass

    def _record(
        self,
        txid: str,
        round_id: str,
        player: Player,
        event: str,
        amount: int,
        status: str,
        ref: str = "",
    ) -> None:
        self.export[txid] = ExportRow(
            txid,
            round_id,
            player.player_id,
            self._sessions[player.player_id],
            event,
            player.money(amount),
            player.currency,
            status,
            time.time(),
            ref,
        )

    def _mark(self, scenario: str, txid: str) -> None:
        self.scenarios.setdefault(scenario, []).append(txid)

    # -- the events -------------------------------------------------------------------------
    def start_session(self, player: Player) -> None:
        session_id = self._next_id(f"session-{player.player_id}")
        self._sessions[player.player_id] = session_id
        if self.operator is not None:
            self.operator.open_session(session_id, player, self.aggregator)
        answer = self._deliver(self._body("balance", player))  # balance at game start
        self._seen_balance(player, answer)

    def bet(self, player: Player, round_id: str, amount: int, *, failover: bool = False) -> bool:
        txid = self._next_id("bet")
        body = self._body(
            "bet", player, transaction_id=txid, amount=player.money(amount), round_id=round_id
        )
        answer = self._deliver(body, give_up=True)
        if answer.status is None or answer.transient:
            # No answer in 3 s: the aggregator reverses the bet rather than retry it.
            self._mark("refund of a bet that timed out", txid)
            self.refund(player, round_id, txid, amount)
            return False
        self._seen_balance(player, answer)
        self._record(txid, round_id, player, "bet", amount, "SETTLED" if answer.ok else "DECLINED")
        if failover:
            self._mark("bet resent from another source address", txid)
            self.client.send(body, alternate=True)
        return answer.ok

    def win(
        self,
        player: Player,
        round_id: str,
        amount: int,
        *,
        phantom: bool = False,
        failover: bool = False,
    ) -> None:
        txid = self._next_id("win")
        body = self._body(
            "win", player, transaction_id=txid, amount=player.money(amount), round_id=round_id
        )
        answer = self._deliver(body)
        self._seen_balance(player, answer)
        if amount:
            self._record(
                txid, round_id, player, "win", amount, "SETTLED" if answer.ok else "DECLINED"
            )
        if phantom:  # the aggregator crashed before reading the answer: it sends it again
            self._mark("win retried after an aggregator crash", txid)
            self._seen_balance(player, self._deliver(body))
        if failover:
            self._mark("win resent from another source address", txid)
            self._seen_balance(player, self.client.send(body, alternate=True))

    def refund(self, player: Player, round_id: str, bet_txid: str, amount: int) -> None:
        txid = self._next_id("refund")
        body = self._body(
            "refund",
            player,
            transaction_id=txid,
            amount=player.money(amount),
            round_id=round_id,
            ref_transaction_id=bet_txid,
        )
        answer = self._deliver(body)
        self._seen_balance(player, answer)
        self._record(bet_txid, round_id, player, "bet", amount, "CANCELLED")
        self._record(
            txid,
            round_id,
            player,
            "refund",
            amount,
            "SETTLED" if answer.ok else "DECLINED",
            bet_txid,
        )

    def settle(self, player: Player, round_id: str, total_bet: int, total_win: int) -> None:
        body = self._body(
            "settle",
            player,
            transaction_id=self._next_id("settle"),
            round_id=round_id,
            total_bet=player.money(total_bet),
            total_win=player.money(total_win),
        )
        self._deliver(body)

    # -- the run ----------------------------------------------------------------------------
    def play(self, rounds: int) -> None:
        weights = [p.weight for p in self.players]
        special = {
            max(rounds // 4, 1): "failover_bet",
            max(rounds // 3, 2): "phantom_win",
            max(rounds // 2, 3): "never_sent",
            max(2 * rounds // 3, 4): "failover_win",
        }
        if self.operator is not None:
            for player in self.players:
                self.operator.deposit(f"{self.prefix}-opening-{player.player_id}", player)
        for number in range(rounds):
            player = self.rng.choices(self.players, weights)[0]
            self.play_round(player, number, special.get(number))
        self.bet_beyond_balance(self.players[0], rounds)
        self.late_win_after_expiry(self.players[1 % len(self.players)], rounds)

    def play_round(self, player: Player, number: int, special: str | None) -> None:
        self._fresh_session(player)
        round_id = f"{self.prefix}-{player.player_id}-round-{number:04d}"
        if special == "never_sent":
            ghost = self._next_id("bet")  # the aggregator's send failed before it left
            self._mark("refund of a bet never sent", ghost)
            self.refund(player, round_id, ghost, stake(self.rng, player))
            return
        bets = [stake(self.rng, player) for _ in range(2 if self.rng.random() < 0.2 else 1)]
        placed = [
            b
            for i, b in enumerate(bets)
            if self.bet(player, round_id, b, failover=special == "failover_bet" and i == 0)
        ]
        won = win_amount(self.rng, sum(placed)) if placed else 0
        if special in ("phantom_win", "failover_win"):
            won = max(won, sum(bets))
        if placed or won:
            self.win(
                player,
                round_id,
                won,
                phantom=special == "phantom_win",
                failover=special == "failover_win",
            )
        self.settle(player, round_id, sum(placed), won)

    def bet_beyond_balance(self, player: Player, number: int) -> None:
        self._fresh_session(player)
        known = self._balances.get(player.player_id, player.opening_minor)
        round_id = f"{self.prefix}-{player.player_id}-round-{number:04d}"
        before = len(self.export)
        self.bet(player, round_id, max(known, 0) + stake(self.rng, player))
        if len(self.export) > before:
            self._mark("bet beyond the balance", list(self.export)[-1])

    def late_win_after_expiry(self, player: Player, number: int) -> None:
        """A delayed payout that arrives after the session has expired: still owed."""
        if player.player_id not in self._sessions:
            self.start_session(player)
        time.sleep(self.session_timeout_s + 1.0)
        round_id = f"{self.prefix}-{player.player_id}-round-{number + 1:04d}"
        amount = stake(self.rng, player)
        self.win(player, round_id, amount)
        self._mark("late win after the session expired", list(self.export)[-1])
