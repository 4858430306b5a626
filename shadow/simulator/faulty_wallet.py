"""A deliberately faulty wallet: the real core with three classic bugs, for sample traffic.

Run:  python -m shadow.simulator.faulty_wallet --listen 127.0.0.1:0 --db sqlite:///w.db \\
          --faults-log faults.jsonl

Bugs, each done once or by rule, and each written to ``--faults-log`` so a test
knows exactly what the diff must find:

* ``double_credit``: a retried win (an exact repeat) is credited again, the
  phantom-win bug of the design note;
* ``slow``: the ``--slow-bet``-th bet is applied, then answered after 3.5 s, so
  the aggregator gives up and retries or refunds;
* ``overdraft``: the first bet beyond the balance is answered OK (nothing is
  debited, as if the check were missing).

It also answers the ``--transient-win``-th win with one 503 ``RETRY_LATER``
without applying it: not a bug, the transient answer a good wallet may give.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.codes import Code
from wallet_core.config import load_config
from wallet_core.dialects import ParseError
from wallet_core.engine import Result
from wallet_core.model import Decision, Event, HttpResponse, Outcome
from wallet_core.money import format_amount
from wallet_core.store import Store, open_store

__all__ = ["FaultyCore", "main"]

SLOW_S = 3.5


class FaultyCore(WalletCore):
    def __init__(
        self,
        store: Store,
        config: WalletConfig,
        log_path: Path,
        *,
        slow_bet: int,
        transient_win: int,
    ) -> None:
        super().__init__(store, config, mode=Mode.LIVE)
        self._log_path = log_path
        self._lock = threading.Lock()
        self._bets = 0
        self._wins = 0
        self._slow_bet = slow_bet
        self._transient_win = transient_win
        self._overdraft_done = False
        self._operator = OperatorApi(store, config)

    def _log(self, fault: str, transaction_id: str | None, **extra: Any) -> None:
        line = json.dumps({"fault": fault, "transaction_id": transaction_id, **extra})
        with self._lock, open(self._log_path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def handle(
        self, aggregator: str, headers: Mapping[str, str], body: bytes, now_us: int
    ) -> Result:
        agg = self.config.aggregators.get(aggregator)
        try:
            cb = agg.dialect.parse(body, self.config.currencies) if agg else None
        except ParseError:
            cb = None
        if (
            cb is None
            or agg is None
            or not agg.secret
            or not agg.dialect.verify(headers, body, agg.secret)
        ):
            return super().handle(aggregator, headers, body, now_us)
        with self._lock:
            first_win = False
            if cb.event is Event.WIN:
                self._wins += 1
                first_win = self._wins == self._transient_win
            slow = False
            if cb.event is Event.BET:
                self._bets += 1
                slow = self._bets == self._slow_bet
        if first_win:
            self._log("transient_503", cb.transaction_id)
            busy = Decision(Outcome.REJECTED, Code.RETRY_LATER, 503, message="busy, retry")
            return Result(busy, agg.dialect.render(busy, self.config.currencies))
        if cb.event is Event.BET and not self._overdraft_done:
            balance = self._operator.balance(cb.player_id, cb.currency)
            if (cb.amount_minor or 0) > balance:
                self._overdraft_done = True
                self._log("overdraft", cb.transaction_id)
                return self._fake_ok(cb.transaction_id, cb.currency, balance)
        result = super().handle(aggregator, headers, body, now_us)
        decision = result.decision
        if (
            cb.event is Event.WIN
            and decision.outcome is Outcome.REPEAT
            and decision.code is Code.OK
            and cb.amount_minor
        ):
            credited = self._operator.adjust(
                f"double-credit:{cb.transaction_id}:{now_us}",
                cb.player_id,
                cb.currency,
                cb.amount_minor,
                now_us,
            )
            self._log("double_credit", cb.transaction_id)
            return self._fake_ok(cb.transaction_id, cb.currency, credited.balance or 0)
        if slow:
            self._log("slow", cb.transaction_id, seconds=SLOW_S)
            time.sleep(SLOW_S)
        return result

    def _fake_ok(self, txid: str | None, currency: str, balance: int) -> Result:
        exponent = self.config.currencies.exponent(currency)
        doc = {
            "status": "OK",
            "balance": format_amount(balance, exponent),
            "currency": currency,
            "transaction_id": txid,
        }
        decision = Decision(
            Outcome.APPLIED,
            Code.OK,
            200,
            transaction_id=txid,
            currency=currency,
            balance_after=balance,
        )
        body = json.dumps(doc, separators=(",", ":")).encode()
        return Result(decision, HttpResponse(200, body))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A deliberately faulty wallet (sample traffic).")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--db", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--faults-log", type=Path, required=True)
    parser.add_argument("--slow-bet", type=int, default=5)
    parser.add_argument("--transient-win", type=int, default=3)
    args = parser.parse_args(argv)

    import os
    import socket

    import uvicorn

    from wallet_core.asgi import create_app

    config = load_config(args.config).require_secrets()
    store = open_store(args.db)
    core = FaultyCore(
        store, config, args.faults_log, slow_bet=args.slow_bet, transient_win=args.transient_win
    )
    app = create_app(
        core, OperatorApi(store, config), config, os.environ.get("RGS_SHADOW_ADMIN_TOKEN")
    )
    host, _, port = args.listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    print(
        f"faulty wallet: listening on http://{host}:{sock.getsockname()[1]}",
        file=sys.stderr,
        flush=True,
    )
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        store.close()


if __name__ == "__main__":
    main()
