"""The HTML report: one self-contained file from the report model.

Self-contained because it travels as a mail attachment or a ticket file and is opened
where there may be no network: styles, script, data and SVG charts are all inline, and a
Content-Security-Policy forbids every fetch and every script but our own (by hash), so
even a rendering bug cannot make a hostile callback run or phone home.

The summary sections are rendered by Jinja2 with autoescape.  The full list of
divergences and their evidence travels as JSON in ``<script type="application/json">``
blocks that the page's script turns into table rows with ``textContent``.  A block larger
than :data:`COMPRESS_ABOVE` bytes is gzipped and base64-encoded (the browser inflates it
with ``DecompressionStream``): 100,000 divergences with their captures are ~100 MB of JSON,
which no one should mail, but ~15 MB compressed.  The evidence block is only inflated when
a detail view is first opened, so the table shows without waiting for it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from .charts import KIND_COLOURS, latency_histogram, stacked_bars
from .model import Report, Row

__all__ = ["COMPRESS_ABOVE", "ROW_COLUMNS", "embed_json", "render_html", "write_html"]

COMPRESS_ABOVE = 1_000_000
#: Order of the values of each row in the page's data block (the script reads these names).
ROW_COLUMNS = (
    "index",
    "kind",
    "transaction_id",
    "round_id",
    "player_id",
    "currency",
    "amount_at_risk_minor",
    "at_risk",
    "at",
    "event",
    "wallet_says",
    "live_says",
    "export_says",
    "detail",
    "capture_ids",
)

#: Decision columns left out of the page: the capture or the divergence next to the decision
#: already shows them, and at 100,000 divergences each costs about a megabyte.
SHOWN_WITH_THE_CAPTURE = frozenset(
    {
        "capture_id",
        "aggregator",
        "event",
        "transaction_id",
        "player_id",
        "round_id",
        "currency",
        "captured_at",
        "latency_ms",
        "error",
        "network_duplicate",
    }
)

_ENV = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=select_autoescape(["html", "j2", "html.j2"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def embed_json(value: Any, *, compress_above: int = COMPRESS_ABOVE) -> tuple[str, Markup]:
    """``(encoding, text)`` to put inside a ``<script type="application/json">`` element.

    Script element contents are not HTML-decoded, so autoescaping would corrupt the JSON;
    instead every ``<``, ``>`` and ``&`` becomes a JSON ``\\u`` escape, after which no
    ``</script>`` or ``<!--`` can appear and the text is safe to mark up as is.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    raw = text.encode("utf-8")
    if len(raw) > compress_above:
        packed = base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode("ascii")
        return "gzip+base64", Markup(packed)  # noqa: S704 - base64 alphabet only
    safe = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return "json", Markup(safe)  # noqa: S704 - no '<' left, see the docstring


def _row_values(row: Row) -> list[Any]:
    return [list(getattr(row, c)) if c == "capture_ids" else getattr(row, c) for c in ROW_COLUMNS]


def _evidence(report: Report) -> dict[str, Any]:
    return {
        "captures": {
            cid: [
                c.captured_at,
                c.method,
                c.path,
                c.request_headers,
                c.request_body,
                c.response_status,
                c.response_headers,
                c.response_body,
                c.latency_ms,
                c.error,
            ]
            for cid, c in report.captures.items()
        },
        "decisions": {
            cid: [pair for pair in fields if pair[0] not in SHOWN_WITH_THE_CAPTURE]
            for cid, fields in report.decisions.items()
        },
        "exports": {
            tx: [[pair for pair in row if pair[0] != "transaction_id"] for row in rows]
            for tx, rows in report.exports.items()
        },
    }


def _asset(name: str) -> str:
    return resources.files("reports").joinpath("templates", name).read_text(encoding="utf-8")


def render_html(report: Report, *, compress_above: int = COMPRESS_ABOVE) -> str:
    """The whole page as one string."""
    script = _asset("report.js")
    if "</script" in script.lower():
        raise AssertionError("report.js must not contain a closing script tag")
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    rows_encoding, rows_text = embed_json(
        {
            "columns": ROW_COLUMNS,
            "rows": [_row_values(r) for r in report.rows],
            "colours": KIND_COLOURS,
        },
        compress_above=compress_above,
    )
    evidence_encoding, evidence_text = embed_json(_evidence(report), compress_above=compress_above)
    money_charts = []
    for currency, by_kind in report.series.at_risk_minor.items():
        exponent = report.currencies.get(currency, 0)
        title = f"Money at risk in {currency}, by kind"
        money_charts.append(
            (title, stacked_bars(report.series, by_kind, title=title, exponent=exponent))
        )
    template = _ENV.get_template("report.html.j2")
    return template.render(
        report=report,
        currencies=sorted({r.currency for r in report.rows if r.currency}),
        kind_names=list(report.series.counts) or sorted({r.kind for r in report.rows}),
        colours=KIND_COLOURS,
        count_chart=stacked_bars(
            report.series, report.series.counts, title="Divergences per period, by kind"
        ),
        money_charts=money_charts,
        latency_chart=latency_histogram(report.latency),
        bucket_minutes=report.series.bucket_seconds // 60,
        rows_encoding=rows_encoding,
        rows_json=rows_text,
        evidence_encoding=evidence_encoding,
        evidence_json=evidence_text,
        style=Markup(_asset("report.css")),  # noqa: S704 - our own file
        script=Markup(script),  # noqa: S704 - our own file, allowed by its hash
        script_hash=script_hash,
    )


def write_html(report: Report, path: Path, *, compress_above: int = COMPRESS_ABOVE) -> int:
    """Write the page to ``path``; return its size in bytes."""
    data = render_html(report, compress_above=compress_above).encode("utf-8")
    path.write_bytes(data)
    return len(data)
