"""Exact money: integer minor units inside, decimal strings on the wire, never floats.

Every amount that crosses a boundary goes through :func:`parse_amount` or
:func:`format_amount`.  Parsing is done on the string itself (no ``Decimal``
context, no float), so the rules are visible and cannot round: at most the
currency's exponent of decimals, no exponent forms, no NaN or infinity, and the
result must fit a signed 64-bit integer because that is what the stores hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "DEFAULT_CURRENCIES",
    "INT64_MAX",
    "CurrencyTable",
    "MoneyError",
    "format_amount",
    "parse_amount",
]

INT64_MAX = 2**63 - 1

#: Exponent (number of decimals) of each code the wallet knows without configuration.
DEFAULT_CURRENCIES: Mapping[str, int] = MappingProxyType(
    {"EUR": 2, "USD": 2, "GBP": 2, "JPY": 0, "KWD": 3, "BTC": 8, "USDT": 6}
)

_DECIMAL = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?")
_CODE = re.compile(r"[A-Z][A-Z0-9]{1,9}")


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly; always a client error."""


class CurrencyTable:
    """Currency code -> exponent; extendable by configuration, immutable once built."""

    __slots__ = ("_exponents",)

    def __init__(self, extra: Mapping[str, int] | None = None) -> None:
        exponents = dict(DEFAULT_CURRENCIES)
        for code, exponent in (extra or {}).items():
            if not _CODE.fullmatch(code):
                raise MoneyError(f"currency code {code!r} is not 2-10 upper-case letters or digits")
            if (
                isinstance(exponent, bool)
                or not isinstance(exponent, int)
                or not 0 <= exponent <= 18
            ):
                raise MoneyError(f"currency {code}: exponent must be an integer from 0 to 18")
            exponents[code] = exponent
        self._exponents: Mapping[str, int] = MappingProxyType(exponents)

    def __reduce__(self) -> tuple[type[CurrencyTable], tuple[dict[str, int]]]:
        """Pickled as its table (a replay worker process rebuilds it; see replay.parallel)."""
        return CurrencyTable, (dict(self._exponents),)

    def __contains__(self, code: object) -> bool:
        return code in self._exponents

    def exponent(self, code: str) -> int:
        """The number of decimals of ``code``; :class:`MoneyError` when unknown."""
        try:
            return self._exponents[code]
        except KeyError:
            raise MoneyError(f"unknown currency {code!r}") from None

    def codes(self) -> list[str]:
        return sorted(self._exponents)


def parse_amount(
    text: object,
    exponent: int,
    *,
    allow_zero: bool = True,
    allow_negative: bool = False,
) -> int:
    """Parse a decimal string such as ``"10.50"`` into minor units (``1050`` for exponent 2).

    Only the plain ``-?digits[.digits]`` form is accepted: JSON numbers, exponent
    forms, ``NaN``, leading ``+``, leading zeros and surrounding spaces are refused,
    because each of them has bitten a wallet somewhere.
    """
    if not isinstance(text, str):
        raise MoneyError("amount must be a decimal string")
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise MoneyError(f"amount {text[:40]!r} is not a plain decimal string")
    sign, whole, frac = match.groups()
    frac = frac or ""
    if len(frac) > exponent:
        raise MoneyError(f"amount {text[:40]!r} has more than {exponent} decimals")
    if len(whole) > 20:
        raise MoneyError("amount does not fit 64 bits")
    minor: int = int(whole) * 10**exponent + (
        int(frac) * 10 ** (exponent - len(frac)) if frac else 0
    )
    if sign:
        minor = -minor
    if minor > INT64_MAX or minor < -INT64_MAX:
        raise MoneyError("amount does not fit 64 bits")
    if minor < 0 and not allow_negative:
        raise MoneyError("amount must not be negative")
    if minor == 0 and not allow_zero:
        raise MoneyError("amount must be greater than zero")
    return minor


def format_amount(minor: int, exponent: int) -> str:
    """Render minor units as the canonical decimal string with exactly ``exponent`` decimals."""
    if exponent == 0:
        return str(minor)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"
