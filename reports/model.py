"""The report model: built once from a DIVERGENCES directory, rendered three ways.

The terminal, the HTML page and ``--json`` all read this one immutable value, so they
cannot disagree about the verdict or a total.  Every amount is kept in integer minor
units next to its text (``format_amount`` with the currency's exponent); nothing here
converts between currencies, so "worst" rankings are made within each currency.
Values that came from traffic stay plain strings: escaping is the renderers' job.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compare.divergence import Kind
from wallet_core.money import DEFAULT_CURRENCIES, format_amount

from .evidence import CaptureView, Evidence, capture_view, decision_fields, iso
from .sources import Sources, load_sources

__all__ = [
    "CaptureView",
    "Evidence",
    "Example",
    "KindRow",
    "Latency",
    "Report",
    "Row",
    "Series",
    "Verdict",
    "Worst",
    "build_report",
    "load_report",
]

SLOW_MS = 3000
_BUCKETS_S = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)
_KIND_ORDER = {str(k): n for n, k in enumerate(Kind)}


@dataclass(frozen=True, slots=True)
class Row:
    """One divergence as every report shows it (``index`` is its place in the file)."""

    index: int
    kind: str
    transaction_id: str | None
    round_id: str | None
    player_id: str | None
    currency: str | None
    amount_at_risk_minor: int
    at_risk: str
    wallet_says: str | None
    live_says: str | None
    export_says: str | None
    capture_ids: tuple[str, ...]
    event: str | None
    detail: str
    at: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    money_at_risk: bool
    divergences: int
    #: ``"EUR 10.00"`` per currency with money at risk, by currency code.
    totals: tuple[str, ...]

    @property
    def headline(self) -> str:
        return "MONEY AT RISK" if self.money_at_risk else "NO MONEY AT RISK"

    @property
    def text(self) -> str:
        noun = "divergence" if self.divergences == 1 else "divergences"
        if not self.money_at_risk:
            return f"{self.headline}: {self.divergences} {noun}, none moves money"
        return f"{self.headline}: {', '.join(self.totals) or 'see summary'} in {self.divergences} {noun}"


@dataclass(frozen=True, slots=True)
class KindRow:
    kind: str
    currency: str
    count: int
    amount_at_risk_minor: int
    at_risk: str


@dataclass(frozen=True, slots=True)
class Worst:
    """A round or player with its divergences in one currency."""

    key: str
    currency: str
    count: int
    amount_at_risk_minor: int
    at_risk: str
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Example:
    row: Row
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Series:
    """Divergences and money at risk per time bucket, by kind (and currency for money)."""

    bucket_seconds: int
    starts: tuple[str, ...]
    counts: Mapping[str, tuple[int, ...]]
    at_risk_minor: Mapping[str, Mapping[str, tuple[int, ...]]]


@dataclass(frozen=True, slots=True)
class Latency:
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    over_3s: int
    #: ``(upper bound in ms or None for the rest, answers in this bucket)``.
    histogram: tuple[tuple[int | None, int], ...]


@dataclass(frozen=True)
class Report:
    source: str
    generated_at: str | None
    first: str | None
    last: str | None
    currencies: Mapping[str, int]
    verdict: Verdict
    kinds: tuple[KindRow, ...]
    coverage: Mapping[str, int | None]
    worst_rounds: tuple[Worst, ...]
    worst_players: tuple[Worst, ...]
    examples: Mapping[str, tuple[Example, ...]]
    series: Series
    latency: Latency | None
    notes: tuple[str, ...]
    rows: tuple[Row, ...]
    captures: Mapping[str, CaptureView]
    decisions: Mapping[str, tuple[tuple[str, str], ...]]
    exports: Mapping[str, tuple[tuple[tuple[str, str], ...], ...]]

    def evidence(self, row: Row) -> Evidence:
        return Evidence(
            tuple(self.captures[c] for c in row.capture_ids if c in self.captures),
            tuple(self.decisions[c] for c in row.capture_ids if c in self.decisions),
            self.exports.get(row.transaction_id or "", ()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The model as JSON-able values, without the full list of divergences and evidence
        (``divergences.json`` already holds those)."""
        out: dict[str, Any] = {"version": 1}
        for f in dataclasses.fields(self):
            if f.name in ("rows", "captures", "decisions", "exports"):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        out["verdict"].update(headline=self.verdict.headline, text=self.verdict.text)
        return out


def load_report(directory: Path) -> Report:
    return build_report(load_sources(directory))


def build_report(sources: Sources, *, per_kind: int = 3, worst: int = 3) -> Report:
    summary = sources.summary
    named = _int_map(summary.get("currencies"))
    used = {d["currency"] for d in sources.divergences if d["currency"]}
    currencies = {**{c: DEFAULT_CURRENCIES[c] for c in used if c in DEFAULT_CURRENCIES}, **named}
    notes = list(sources.notes)
    unknown = sorted(
        {
            d["currency"]
            for d in sources.divergences
            if d["currency"] and d["currency"] not in currencies
        }
    )
    if unknown:
        notes.append(f"exponent unknown for {', '.join(unknown)}: amounts shown in minor units")

    def money(minor: int, currency: str | None) -> str:
        return f"{currency or '?'} {format_amount(minor, currencies.get(currency or '', 0))}"

    rows = tuple(_row(n, d, money) for n, d in enumerate(sources.divergences))
    totals: dict[str, int] = defaultdict(int)
    for row in rows:
        totals[row.currency or "?"] += row.amount_at_risk_minor
    at_risk = any(v > 0 for v in totals.values()) or bool(summary.get("money_at_risk"))
    verdict = Verdict(
        at_risk, len(rows), tuple(money(v, c) for c, v in sorted(totals.items()) if v)
    )

    first, last = _time_range(summary, rows)
    decisions = {cid: decision_fields(row, currencies) for cid, row in sources.decisions.items()}
    exports = {tx: tuple(tuple(r.items()) for r in found) for tx, found in sources.exports.items()}
    captures = {cid: capture_view(row) for cid, row in sources.captures.items()}
    report = Report(
        source=sources.directory.name,
        generated_at=summary.get("generated_at"),
        first=first,
        last=last,
        currencies=currencies,
        verdict=verdict,
        kinds=_kind_rows(rows, money),
        coverage={
            k: _int_or_none((summary.get("coverage") or {}).get(k))
            for k in ("captured", "decided", "matched", "unmatched_wallet", "unmatched_export")
        },
        worst_rounds=_worst(rows, lambda r: r.round_id, worst, money),
        worst_players=_worst(rows, lambda r: r.player_id, worst, money),
        examples={},
        series=_series(rows),
        latency=_latency(summary.get("latency_ms")),
        notes=tuple(notes),
        rows=rows,
        captures=captures,
        decisions=decisions,
        exports=exports,
    )
    examples: dict[str, list[Example]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r.at is None, r.at or "", r.index)):
        if len(examples[row.kind]) < per_kind:
            examples[row.kind].append(Example(row, report.evidence(row)))
    ordered = sorted(examples, key=lambda k: (_KIND_ORDER.get(k, 99), k))
    return dataclasses.replace(report, examples={k: tuple(examples[k]) for k in ordered})


def _row(index: int, d: Mapping[str, Any], money: Any) -> Row:
    at = d.get("at")
    return Row(
        index=index,
        kind=str(d["kind"]),
        transaction_id=d.get("transaction_id"),
        round_id=d.get("round_id"),
        player_id=d.get("player_id"),
        currency=d.get("currency"),
        amount_at_risk_minor=int(d["amount_at_risk_minor"]),
        at_risk=money(int(d["amount_at_risk_minor"]), d.get("currency")),
        wallet_says=d.get("wallet_says"),
        live_says=d.get("live_says"),
        export_says=d.get("export_says"),
        capture_ids=tuple(d.get("capture_ids") or ()),
        event=d.get("event"),
        detail=d.get("detail") or "",
        at=iso(at) if isinstance(at, datetime) else None,
    )


def _kind_rows(rows: Iterable[Row], money: Any) -> tuple[KindRow, ...]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        slot = groups[(row.kind, row.currency or "?")]
        slot[0] += 1
        slot[1] += row.amount_at_risk_minor
    keys = sorted(groups, key=lambda k: (_KIND_ORDER.get(k[0], 99), k[0], k[1]))
    return tuple(
        KindRow(k, c, groups[(k, c)][0], groups[(k, c)][1], money(groups[(k, c)][1], c))
        for k, c in keys
    )


def _worst(rows: Iterable[Row], key: Any, limit: int, money: Any) -> tuple[Worst, ...]:
    """The ``limit`` worst groups of each currency: most money at risk, then most divergences."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        if key(row):
            groups[(row.currency or "?", key(row))].append(row)
    found = [
        Worst(
            k,
            c,
            len(g),
            sum(r.amount_at_risk_minor for r in g),
            money(sum(r.amount_at_risk_minor for r in g), c),
            tuple(sorted({r.kind for r in g}, key=lambda x: _KIND_ORDER.get(x, 99))),
        )
        for (c, k), g in groups.items()
    ]
    found.sort(key=lambda w: (w.currency, -w.amount_at_risk_minor, -w.count, w.key))
    kept: dict[str, int] = defaultdict(int)
    out = []
    for w in found:
        kept[w.currency] += 1
        if kept[w.currency] <= limit:
            out.append(w)
    return tuple(out)


def _series(rows: tuple[Row, ...]) -> Series:
    """Bucket the divergences so a chart has at most about 60 bars."""
    stamps = [(_epoch(r.at), r) for r in rows if r.at]
    if not stamps:
        return Series(3600, (), {}, {})
    lo, hi = min(s for s, _ in stamps), max(s for s, _ in stamps)
    width = next((w for w in _BUCKETS_S if (hi - lo) // w < 60), _BUCKETS_S[-1])
    start = lo - lo % width
    n = (hi - start) // width + 1
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    money: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0] * n))
    for stamp, row in stamps:
        slot = (stamp - start) // width
        counts[row.kind][slot] += 1
        if row.amount_at_risk_minor:
            money[row.currency or "?"][row.kind][slot] += row.amount_at_risk_minor
    kinds = sorted(counts, key=lambda k: _KIND_ORDER.get(k, 99))
    return Series(
        width,
        tuple(iso(datetime.fromtimestamp(start + i * width, UTC)) for i in range(n)),
        {k: tuple(counts[k]) for k in kinds},
        {
            c: {
                k: tuple(v)
                for k, v in sorted(money[c].items(), key=lambda kv: _KIND_ORDER.get(kv[0], 99))
            }
            for c in sorted(money)
        },
    )


def _latency(raw: Any) -> Latency | None:
    """Latency from the summary; its histogram counts are cumulative (``le``, Prometheus
    style, the last bucket every answer), the model keeps answers per bucket."""
    if not isinstance(raw, dict) or not raw.get("count"):
        return None
    buckets = [b for b in raw.get("histogram") or () if isinstance(b, dict)]
    histogram, below = [], 0
    for bucket in buckets:
        total = int(bucket.get("count") or 0)
        histogram.append((_int_or_none(bucket.get("le_ms")), max(total - below, 0)))
        below = max(below, total)
    return Latency(
        int(raw["count"]),
        _float(raw.get("p50")),
        _float(raw.get("p95")),
        _float(raw.get("p99")),
        _float(raw.get("max")),
        int(raw.get("over_3s") or 0),
        tuple(histogram),
    )


def _time_range(summary: Mapping[str, Any], rows: tuple[Row, ...]) -> tuple[str | None, str | None]:
    span = summary.get("time_range") or {}
    stamps = sorted(r.at for r in rows if r.at)
    first = span.get("first") or (stamps[0] if stamps else None)
    last = span.get("last") or (stamps[-1] if stamps else None)
    return first, last


def _epoch(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def _int_map(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as JSON-able dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
