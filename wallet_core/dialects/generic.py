"""The reference ``generic`` dialect of PROTOCOL.md section 1.

JSON body, decimal-string amounts, ``X-RGS-Signature: sha256=<hex>`` over the raw
body.  Parsing never creates a float (``parse_float=Decimal`` and amounts must be
strings) and rejects anything the contract does not allow with a message that
names the field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from decimal import Decimal
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


def _reject_constant(name: str) -> Any:
    raise ParseError(f"{name} is not allowed in JSON")


def _loads(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)


def _text(doc: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = doc.get(name)
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


def _money(
    doc: dict[str, Any], name: str, exponent: int, *, required: bool, allow_zero: bool
) -> int | None:
    value = doc.get(name)
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
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), given[len(_PREFIX) :].strip().encode())

    def sign(self, body: bytes, secret: bytes) -> dict[str, str]:
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
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
        raw_event = doc.get("event")
        event = _EVENTS.get(raw_event) if isinstance(raw_event, str) else None
        if event is None:
            raise ParseError("field event must be one of balance, bet, win, refund, settle")
        session_id = _text(doc, "session_id", required=True)
        player_id = _text(doc, "player_id", required=True)
        currency = _text(doc, "currency", required=True)
        timestamp = doc.get("timestamp")
        if not isinstance(timestamp, str) or not _TIMESTAMP.fullmatch(timestamp):
            raise ParseError("field timestamp must be an RFC 3339 UTC time")
        assert session_id is not None and player_id is not None and currency is not None
        try:
            exponent = currencies.exponent(currency)
        except MoneyError as exc:
            raise ParseError(f"field currency: {exc}") from None
        moves = event is not Event.BALANCE
        amount: int | None = None
        if event in (Event.BET, Event.REFUND):
            amount = _money(doc, "amount", exponent, required=True, allow_zero=False)
        elif event is Event.WIN:
            amount = _money(doc, "amount", exponent, required=True, allow_zero=True)
        return Callback(
            event=event,
            session_id=session_id,
            player_id=player_id,
            currency=currency,
            timestamp=timestamp,
            transaction_id=_text(doc, "transaction_id", required=moves),
            amount_minor=amount,
            round_id=_text(doc, "round_id", required=moves),
            ref_transaction_id=_text(doc, "ref_transaction_id", required=event is Event.REFUND),
            game_id=_text(doc, "game_id", required=False),
            total_bet_minor=_money(doc, "total_bet", exponent, required=False, allow_zero=True),
            total_win_minor=_money(doc, "total_win", exponent, required=False, allow_zero=True),
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
        if decision.code is Code.OK:
            doc: dict[str, str] = {"status": "OK"}
            if balance is not None:
                doc["balance"] = balance
            if decision.currency is not None:
                doc["currency"] = decision.currency
            if decision.transaction_id is not None:
                doc["transaction_id"] = decision.transaction_id
        else:
            doc = {"status": "ERROR", "code": decision.code.value, "message": decision.message}
            if balance is not None:
                doc["balance"] = balance
        headers: tuple[tuple[str, str], ...] = _JSON_HEADERS
        if decision.code is Code.RETRY_LATER:
            headers = (*_JSON_HEADERS, ("retry-after", "1"))
        return HttpResponse(decision.http_status, _dumps(doc), headers)

    def render_mock(self, decision: Decision, currencies: CurrencyTable) -> HttpResponse:
        doc: dict[str, str] = {"status": "OK"}
        balance = _balance_text(decision, currencies)
        if balance is not None:
            doc["balance"] = balance
        if decision.currency is not None:
            doc["currency"] = decision.currency
        if decision.transaction_id is not None:
            doc["transaction_id"] = decision.transaction_id
        return HttpResponse(200, _dumps(doc), _JSON_HEADERS)

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


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _dumps(doc: dict[str, str]) -> bytes:
    return _ENCODE(doc).encode()
