"""How an aggregator's settlement export maps onto the reference columns (PROTOCOL.md section 2).

Every aggregator ships its own export; rather than one loader per vendor, the
``[settlement]`` table of the configuration names the columns, the amount units
and the status and event spellings.  The defaults describe the reference CSV, so
an empty table loads it as it is.  Validation is strict for the same reason as
the rest of the configuration: a typo in a column map silently compares nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wallet_core.errors import ConfigError

__all__ = ["ROUND_FIELDS", "ROW_FIELDS", "STATUSES", "ColumnMap", "parse_column_map"]

#: The reference columns, in the order of PROTOCOL.md section 2.
ROW_FIELDS = (
    "transaction_id",
    "round_id",
    "player_id",
    "session_id",
    "event",
    "amount",
    "currency",
    "status",
    "settled_at",
    "ref_transaction_id",
)
#: Fields of a per-round layout (one row per round with bet and win totals).
ROUND_FIELDS = (
    "round_id",
    "player_id",
    "session_id",
    "bet",
    "win",
    "currency",
    "status",
    "settled_at",
)
#: Fields a map may leave out (mapped to ``""``): the diff works without them.
OPTIONAL_FIELDS = frozenset({"session_id", "settled_at", "ref_transaction_id", "player_id"})
STATUSES = ("SETTLED", "DECLINED", "CANCELLED")
EVENTS = ("bet", "win", "refund")
_KEYS = frozenset(
    {
        "format",
        "layout",
        "delimiter",
        "skip_lines",
        "amount_units",
        "amount_scale",
        "timestamp",
        "columns",
        "status_values",
        "event_values",
        "skip_status_values",
    }
)


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """A validated ``[settlement]`` table; the default instance is the reference CSV."""

    layout: str = "rows"
    format: str = "auto"
    delimiter: str = ","
    skip_lines: int = 0
    #: ``decimal``: decimal strings in major units; ``integer``: integers worth 10**-scale.
    amount_units: str = "decimal"
    #: For ``integer`` units, the power of ten of one unit (Hub88: 5); None = the currency's.
    amount_scale: int | None = None
    #: ``rfc3339`` (values without an offset are read as UTC), ``epoch_ms`` or ``epoch_s``.
    timestamp: str = "rfc3339"
    columns: Mapping[str, str] = field(default_factory=dict)
    status_values: Mapping[str, str] = field(default_factory=dict)
    event_values: Mapping[str, str] = field(default_factory=dict)
    skip_status_values: frozenset[str] = frozenset()

    def fields(self) -> tuple[str, ...]:
        return ROUND_FIELDS if self.layout == "rounds" else ROW_FIELDS

    def source(self, name: str) -> str:
        """The export's column for reference field ``name`` (``""`` when left out)."""
        return self.columns.get(name, name)

    def status_of(self) -> dict[str, str]:
        return dict(self.status_values) if self.status_values else {s: s for s in STATUSES}

    def event_of(self) -> dict[str, str]:
        return dict(self.event_values) if self.event_values else {e: e for e in EVENTS}


def _choice(table: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = table.get(key, default)
    if value not in choices:
        raise ConfigError(f"settlement.{key}: must be one of {', '.join(choices)}")
    return str(value)


def _value_map(table: Mapping[str, Any], key: str, targets: tuple[str, ...]) -> dict[str, str]:
    """``{TARGET = ["their spelling", ...]}`` turned into ``their spelling -> TARGET``."""
    raw = table.get(key, {})
    if not isinstance(raw, dict):
        raise ConfigError(f"settlement.{key}: must be a table")
    out: dict[str, str] = {}
    for target, spellings in raw.items():
        if target not in targets:
            raise ConfigError(f"settlement.{key}.{target}: unknown key")
        if isinstance(spellings, str):
            spellings = [spellings]
        if not isinstance(spellings, list) or not all(isinstance(s, str) for s in spellings):
            raise ConfigError(f"settlement.{key}.{target}: must be a string or a list of strings")
        for spelling in spellings:
            if spelling in out:
                raise ConfigError(f"settlement.{key}.{target}: {spelling!r} is mapped twice")
            out[spelling] = target
    return out


def parse_column_map(table: Mapping[str, Any] | None) -> ColumnMap:
    """Validate the raw ``[settlement]`` table; :class:`ConfigError` names the bad key."""
    table = dict(table or {})
    for key in table:
        if key not in _KEYS:
            raise ConfigError(f"settlement.{key}: unknown key")
    layout = _choice(table, "layout", ("rows", "rounds"), "rows")
    fmt = _choice(table, "format", ("auto", "csv", "parquet"), "auto")
    units = _choice(table, "amount_units", ("decimal", "integer"), "decimal")
    stamp = _choice(table, "timestamp", ("rfc3339", "epoch_ms", "epoch_s"), "rfc3339")
    delimiter = table.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ConfigError("settlement.delimiter: must be one character")
    skip = table.get("skip_lines", 0)
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ConfigError("settlement.skip_lines: must be a non-negative integer")
    scale = table.get("amount_scale")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale <= 18
    ):
        raise ConfigError("settlement.amount_scale: must be an integer from 0 to 18")
    fields = ROUND_FIELDS if layout == "rounds" else ROW_FIELDS
    columns = table.get("columns", {})
    if not isinstance(columns, dict):
        raise ConfigError("settlement.columns: must be a table")
    for name, column in columns.items():
        if name not in fields:
            raise ConfigError(f"settlement.columns.{name}: unknown key")
        if not isinstance(column, str) or (not column and name not in OPTIONAL_FIELDS):
            raise ConfigError(f"settlement.columns.{name}: must be a column name")
    status_values = _value_map(table, "status_values", STATUSES)
    event_values = _value_map(table, "event_values", EVENTS)
    skip_status = table.get("skip_status_values", [])
    if not isinstance(skip_status, list) or not all(isinstance(s, str) for s in skip_status):
        raise ConfigError("settlement.skip_status_values: must be a list of strings")
    if layout == "rounds" and event_values:
        raise ConfigError("settlement.event_values: not used by the rounds layout")
    return ColumnMap(
        layout,
        fmt,
        delimiter,
        skip,
        units,
        scale,
        stamp,
        dict(columns),
        status_values,
        event_values,
        frozenset(skip_status),
    )
