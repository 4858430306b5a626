"""Factories for signed ``generic`` callbacks: tests, benchmarks and the simulator share them.

Kept in the package (as mitmproxy keeps ``tflow``) so every caller builds
callbacks the same way instead of hand-writing JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .dialects import GenericDialect

__all__ = ["CallbackFactory"]

_DIALECT = GenericDialect()


@dataclass
class CallbackFactory:
    """Builds ``(headers, body)`` pairs for one aggregator secret."""

    secret: bytes = b"secret"
    timestamp: str = "2026-11-25T12:00:00Z"
    defaults: dict[str, Any] = field(default_factory=dict)

    def body(self, event: str, **fields: Any) -> bytes:
        doc: dict[str, Any] = {"event": event, "timestamp": self.timestamp, **self.defaults}
        doc.update({k: v for k, v in fields.items() if v is not None})
        return json.dumps(doc, separators=(",", ":")).encode()

    def sign(self, body: bytes) -> dict[str, str]:
        return _DIALECT.sign(body, self.secret)

    def make(self, event: str, **fields: Any) -> tuple[dict[str, str], bytes]:
        body = self.body(event, **fields)
        return self.sign(body), body
