"""Redaction of captured headers and JSON body fields by a keyed hash.

Why a keyed hash and not a blank: the comparison joins and counts by values
such as ``player_id``; ``REDACTED-<hex HMAC-SHA256(key, value)>`` keeps equal
values equal (and different ones different) without storing them.  The key
(from an environment variable named in the configuration) stops anyone holding
the files from confirming a guess by hashing it themselves.

Redaction happens in the proxy before a record touches the disk.

Why the signature header is kept: replay re-verifies ``X-RGS-Signature``
against the raw body.  Redacting a *body field* changes the body bytes, so
signature re-verification of those captures fails: configure replay to skip
verification for such captures, or redact headers only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any

__all__ = ["PREFIX", "Redactor"]

PREFIX = "REDACTED-"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Redactor:
    """Replaces configured headers and body fields; a no-op when none are configured."""

    def __init__(self, key: bytes, headers: Iterable[str] = (), body_fields: Iterable[str] = ()):
        self._key = key
        self.headers = frozenset(h.strip().lower() for h in headers if h.strip())
        self.body_fields = frozenset(f.strip() for f in body_fields if f.strip())
        if (self.headers or self.body_fields) and not key:
            raise ValueError("redaction needs a non-empty key")

    @property
    def active(self) -> bool:
        return bool(self.headers or self.body_fields)

    def token(self, value: str | bytes) -> str:
        """The stand-in for ``value``: equal inputs give equal tokens."""
        raw = value.encode() if isinstance(value, str) else value
        return PREFIX + hmac.new(self._key, raw, hashlib.sha256).hexdigest()

    def redact_headers(self, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """The header pairs with the configured names (any case) replaced."""
        if not self.headers:
            return pairs
        return tuple(
            (name, self.token(value)) if name.lower() in self.headers else (name, value)
            for name, value in pairs
        )

    def redact_body(self, body: bytes | None) -> bytes | None:
        """The body with the configured fields replaced at any depth of its JSON.

        A body that is not JSON, or has none of the fields, comes back unchanged
        (byte for byte, so its signature still verifies).
        """
        if not self.body_fields or not body:
            return body
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return body
        changed, new = self._walk(doc)
        if not changed:
            return body
        return json.dumps(new, ensure_ascii=False, separators=(",", ":")).encode()

    def redact_value(self, field: str, value: str | None) -> str | None:
        """An indexed value (``transaction_id``) redacted like its body field would be."""
        if value is None or field not in self.body_fields:
            return value
        return self.token(value)

    def _walk(self, node: Any) -> tuple[bool, Any]:
        if isinstance(node, dict):
            changed, out = False, {}
            for key, value in node.items():
                if key in self.body_fields:
                    text = value if isinstance(value, str) else _canonical(value)
                    out[key] = self.token(text)
                    changed = True
                else:
                    sub_changed, out[key] = self._walk(value)
                    changed = changed or sub_changed
            return changed, out
        if isinstance(node, list):
            results = [self._walk(item) for item in node]
            return any(c for c, _ in results), [v for _, v in results]
        return False, node
