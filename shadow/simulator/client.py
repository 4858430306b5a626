"""The aggregator's HTTP side: signed callbacks, a 3 s timeout, and a failover address.

Every callback is signed once and its bytes kept, so a retry resends exactly the
same bytes (what real aggregators do for hours).  The alternate client binds
another loopback source address (127.0.0.2), standing in for the aggregator's
failover node.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from wallet_core.dialects import GenericDialect

__all__ = ["Answer", "AggregatorClient"]

TIMEOUT_S = 3.0
_DIALECT = GenericDialect()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no answer within the timeout (or the connection failed)
    doc: dict[str, Any]
    at: float

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.doc.get("status") == "OK"

    @property
    def transient(self) -> bool:
        return self.status is None or self.status >= 500


class AggregatorClient:
    def __init__(self, target: str, aggregator: str, secret: bytes) -> None:
        self.url = f"{target.rstrip('/')}/rgs/{aggregator}"
        self.secret = secret
        timeout = httpx.Timeout(TIMEOUT_S, connect=2.0)
        self.primary = httpx.Client(timeout=timeout)
        self.alternate = httpx.Client(
            timeout=timeout, transport=httpx.HTTPTransport(local_address="127.0.0.2")
        )
        self.sent = 0

    def sign(self, doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, separators=(",", ":")).encode()

    def send(self, body: bytes, *, alternate: bool = False) -> Answer:
        headers = _DIALECT.sign(body, self.secret)
        client = self.alternate if alternate else self.primary
        self.sent += 1
        try:
            response = client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError:
            return Answer(None, {}, time.time())
        try:
            doc = response.json()
        except ValueError:
            doc = {}
        return Answer(response.status_code, doc if isinstance(doc, dict) else {}, time.time())

    def close(self) -> None:
        self.primary.close()
        self.alternate.close()
