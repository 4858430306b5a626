"""Opening balances from a CSV snapshot (``player_id,currency,balance``).

Used by ``serve --snapshot`` and ``replay --snapshot``.  Errors name the file,
line and column so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import InputError
from .money import CurrencyTable, MoneyError, parse_amount

__all__ = ["read_snapshot"]

COLUMNS = ("player_id", "currency", "balance")


def read_snapshot(path: str | Path, currencies: CurrencyTable) -> list[tuple[str, str, int]]:
    """Every row as ``(player_id, currency, balance_minor)``, in file order, checked."""
    rows: list[tuple[str, str, int]] = []
    seen: set[tuple[str, str]] = set()
    try:
        handle = open(path, encoding="utf-8", newline="")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{path}: cannot read snapshot: {exc.strerror}") from None
    with handle:
        try:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}:1: missing column {missing[0]}")
            for line, record in enumerate(reader, start=2):
                player, currency, text = (record.get(c) for c in COLUMNS)
                if not player:
                    raise InputError(f"{path}:{line}: column player_id is empty")
                if not currency or currency not in currencies:
                    raise InputError(f"{path}:{line}: column currency: unknown {currency!r}")
                try:
                    minor = parse_amount(text, currencies.exponent(currency))
                except MoneyError as exc:
                    raise InputError(f"{path}:{line}: column balance: {exc}") from None
                if (player, currency) in seen:
                    raise InputError(f"{path}:{line}: {player}/{currency} appears twice")
                seen.add((player, currency))
                rows.append((player, currency, minor))
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        except csv.Error as exc:
            raise InputError(f"{path}: not valid CSV: {exc}") from None
    return rows
