"""The reference ``generic`` dialect of PROTOCOL.md section 1.

JSON body, decimal-string amounts, ``X-RGS-Signature: sha256=<hex>`` over the raw
body.  Parsing never creates a float (``parse_float=Decimal`` and amounts must be
strings) and rejects anything the contract does not allow with a message that
names the field.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from wallet_core.codes import Code
from wallet_core.model import Callback, Decision, Event, HttpResponse
from wallet_core.money import CurrencyTable, MoneyError, format_amount, parse_amount

from .base import LiveAnswer, ParseError, error_code

__all__ = ["SIGNATURE_HEADER", "GenericDialect"]

SIGNATURE_HEADER = "x-rgs-signature"
_PREFIX = "sha256="
_EVENTS = {e.value: e for e in Event}
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|z|\+00:00)")
_MAX_ID = 128
_JSON_HEADERS = (("content-type", "application/json"),)


_BLOCK = 64  # SHA-256's block size in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=64)
def _keyed(secret: bytes) -> tuple[Any, Any]:
    """SHA-256 after the inner and after the outer padded key of HMAC (RFC 2104).

    ``hmac.new`` redoes this key setup for every message; an aggregator's secret
    does not change, so it is done once per secret and each callback copies the states.
    """
    key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def _hmac_sha256_hex(secret: bytes, body: bytes) -> str:
    """``hmac.new(secret, body, hashlib.sha256).hexdigest()``, from the cached key states."""
    if type(secret) is not bytes:  # unhashable or unusual: the library computes it
        return hmac.new(secret, body, hashlib.sha256).hexdigest()
    inner, outer = _keyed(secret)
    inner = inner.copy()
    inner.update(body)
    outer = outer.copy()
    outer.update(inner.digest())
    hexdigest: str = outer.hexdigest()
    return hexdigest


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{name} is not allowed in JSON")


#: Built once: ``json.loads`` with options builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
_DECODE = _DECODER.decode
#: The scanner ``decode`` itself calls (an attribute JSONDecoder sets; not in typeshed).
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _loads(body: bytes) -> Any:
    """Exactly ``json.loads(body, parse_float=Decimal, parse_constant=...)``, cheaper.

    ``json.loads`` detects the encoding of bytes (UTF-8/16/32, BOMs); a body that
    starts with ``{"`` can only be UTF-8 by its rules, so the detection is skipped.
    A body that is one object from its first to its last character (no surrounding
    whitespace) is scanned directly; anything else takes the full decoder, which
    skips whitespace and reports extra data.
    """
    if body[:2] != b'{"':
        return _DECODE(body.decode(json.detect_encoding(body), "surrogatepass"))
    text = body.decode("utf-8", "surrogatepass")
    try:
        doc, end = _SCAN(text, 0)
    except StopIteration:  # a value missing: the decoder raises its own error for it
        end = -1
    return doc if end == len(text) else _DECODE(text)


def _text(value: Any, name: str, required: bool) -> str | None:
    """A validated id field; ``value`` is what the document holds under ``name``."""
    # The common case first, in one expression: an ASCII string of 1-128 characters.
    if type(value) is str and 0 < len(value) <= _MAX_ID and value.isascii():
        if "\x00" not in value:
            return value
    if value is None:
        if required:
            raise ParseError(f"field {name} is required")
        return None
    if not isinstance(value, str):
        raise ParseError(f"field {name} must be a string")
    if not 0 < len(value) <= _MAX_ID:
        raise ParseError(f"field {name} must be 1 to {_MAX_ID} characters")
    # Ids end up in every store and in the audit hash: NUL (PostgreSQL text refuses it) and
    # lone surrogates (not encodable as UTF-8) are the client's error, not a storage failure.
    if "\x00" in value or not value.isascii() and not _utf8(value):
        raise ParseError(f"field {name} must be UTF-8 text without NUL")
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _money(value: Any, name: str, exponent: int, required: bool, allow_zero: bool) -> int | None:
    """A validated amount field; ``value`` is what the document holds under ``name``."""
    if value is None:
        if required:
            raise ParseError(f"field {name} is required")
        return None
    try:
        return parse_amount(value, exponent, allow_zero=allow_zero)
    except MoneyError as exc:
        raise ParseError(f"field {name}: {exc}") from None


class GenericDialect:
    """Stateless; one instance serves every aggregator configured with ``dialect = "generic"``."""

    name = "generic"

    def verify(self, headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
        given = headers.get(SIGNATURE_HEADER)
        if not given or not given.startswith(_PREFIX):
            return False
        expected = _hmac_sha256_hex(secret, body)
        return hmac.compare_digest(expected.encode(), given[len(_PREFIX) :].strip().encode())

    def sign(self, body: bytes, secret: bytes) -> dict[str, str]:
        digest = _hmac_sha256_hex(secret, body)
        return {"content-type": "application/json", SIGNATURE_HEADER: _PREFIX + digest}

    def parse(self, body: bytes, currencies: CurrencyTable) -> Callback:
        try:
            doc = _loads(body)
        except ParseError:
            raise
        except (ValueError, RecursionError):
            raise ParseError("body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise ParseError("body must be a JSON object")
        get = doc.get
        raw_event = get("event")
        event = _EVENTS.get(raw_event) if isinstance(raw_event, str) else None
        if event is None:
            raise ParseError("field event must be one of balance, bet, win, refund, settle")
        # Fields are checked in this order, so the first bad one is the one named.
        session_id = _text(get("session_id"), "session_id", True)
        player_id = _text(get("player_id"), "player_id", True)
        currency = _text(get("currency"), "currency", True)
        timestamp = get("timestamp")
        if not isinstance(timestamp, str) or not _TIMESTAMP.fullmatch(timestamp):
            raise ParseError("field timestamp must be an RFC 3339 UTC time")
        assert session_id is not None and player_id is not None and currency is not None
        try:
            exponent = currencies.exponent(currency)
        except MoneyError as exc:
            raise ParseError(f"field currency: {exc}") from None
        moves = event is not Event.BALANCE
        amount: int | None = None
        if event is Event.BET or event is Event.REFUND:
            amount = _money(get("amount"), "amount", exponent, True, False)
        elif event is Event.WIN:
            amount = _money(get("amount"), "amount", exponent, True, True)
        return Callback(
            event,
            session_id,
            player_id,
            currency,
            timestamp,
            _text(get("transaction_id"), "transaction_id", moves),
            amount,
            _text(get("round_id"), "round_id", moves),
            _text(get("ref_transaction_id"), "ref_transaction_id", event is Event.REFUND),
            _text(get("game_id"), "game_id", False),
            _money(get("total_bet"), "total_bet", exponent, False, True),
            _money(get("total_win"), "total_win", exponent, False, True),
        )

    def identify(self, body: bytes) -> tuple[str | None, str | None]:
        try:
            doc = _loads(body)
        except Exception:
            return None, None
        if not isinstance(doc, dict):
            return None, None
        txid, event = doc.get("transaction_id"), doc.get("event")
        return (txid if isinstance(txid, str) else None, event if isinstance(event, str) else None)

    def routing_key(self, body: bytes) -> tuple[str | None, str | None]:
        try:
            doc = _loads(body)
        except Exception:
            return None, None
        if not isinstance(doc, dict):
            return None, None
        player, currency = doc.get("player_id"), doc.get("currency")
        return (
            player if isinstance(player, str) else None,
            currency if isinstance(currency, str) else None,
        )

    def render(self, decision: Decision, currencies: CurrencyTable) -> HttpResponse:
        balance = _balance_text(decision, currencies)
        code = decision.code
        if code is Code.OK:
            body = _ok_body(balance, decision.currency, decision.transaction_id)
        else:
            body = f'{{"status":"ERROR","code":"{code.value}","message":{_str(decision.message)}'
            if balance is not None:
                body += f',"balance":"{balance}"'
            body += "}"
        headers: tuple[tuple[str, str], ...] = _JSON_HEADERS
        if code is Code.RETRY_LATER:
            headers = (*_JSON_HEADERS, ("retry-after", "1"))
        return HttpResponse(decision.http_status, body.encode(), headers)

    def render_mock(self, decision: Decision, currencies: CurrencyTable) -> HttpResponse:
        balance = _balance_text(decision, currencies)
        body = _ok_body(balance, decision.currency, decision.transaction_id)
        return HttpResponse(200, body.encode(), _JSON_HEADERS)

    def render_both(
        self, decision: Decision, currencies: CurrencyTable
    ) -> tuple[HttpResponse, HttpResponse]:
        # A success answered with 200 is rendered by render and render_mock alike (same
        # body builder, same status, same headers): build it once.
        if decision.code is Code.OK and decision.http_status == 200:
            mock = self.render_mock(decision, currencies)
            return mock, mock
        return self.render(decision, currencies), self.render_mock(decision, currencies)

    def read_answer(
        self,
        status: int | None,
        body: bytes | None,
        currency: str | None,
        currencies: CurrencyTable,
    ) -> LiveAnswer:
        if status is None:
            return LiveAnswer(None, None, None)
        doc: Any = None
        if body:
            try:
                doc = _loads(body)
            except Exception:
                doc = None
        if not isinstance(doc, dict):
            doc = {}
        accepted = status == 200 and doc.get("status") == "OK"
        code = "OK" if accepted else error_code(doc.get("code"))
        if code is None and not accepted:
            code = f"HTTP_{status}"
        quoted = doc.get("currency")
        money_code = quoted if isinstance(quoted, str) else currency
        return LiveAnswer(accepted, code, _live_balance(doc.get("balance"), money_code, currencies))


def _live_balance(value: object, currency: str | None, currencies: CurrencyTable) -> int | None:
    if not isinstance(value, str) or currency is None or currency not in currencies:
        return None
    try:
        return parse_amount(value, currencies.exponent(currency), allow_negative=True)
    except MoneyError:
        return None


def _balance_text(decision: Decision, currencies: CurrencyTable) -> str | None:
    if decision.balance_after is None or decision.currency is None:
        return None
    return format_amount(decision.balance_after, currencies.exponent(decision.currency))


#: The string encoder ``json.dumps(..., ensure_ascii=False)`` applies to every str: bodies
#: are assembled by hand around it (a dict and a JSONEncoder per answer cost ~8 times more),
#: byte for byte what ``json.dumps(doc, separators=(",", ":"), ensure_ascii=False)`` gives.
_str = encode_basestring


def _ok_body(balance: str | None, currency: str | None, transaction_id: str | None) -> str:
    """The success body: ``{"status":"OK"}`` plus whichever of the three fields are known."""
    body = '{"status":"OK"'
    if balance is not None:  # digits, a point and a sign: nothing to escape
        body += f',"balance":"{balance}"'
    if currency is not None:
        body += f',"currency":{_str(currency)}'
    if transaction_id is not None:
        body += f',"transaction_id":{_str(transaction_id)}'
    return body + "}"
