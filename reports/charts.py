"""Inline SVG charts for the HTML report, drawn on the server side.

Drawn in Python rather than in the page's script so the charts print, show with
scripts disabled (some mail clients and ticket viewers), and need no chart library:
the page must work from a mail attachment with no network.  Every text that goes into
the SVG passes through :func:`markupsafe.escape`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

from wallet_core.money import format_amount

from .model import Latency, Series

__all__ = ["KIND_COLOURS", "latency_histogram", "stacked_bars"]

#: Okabe-Ito palette: tells the eight kinds apart for colour-blind readers too.
KIND_COLOURS = {
    "MISSING_IN_WALLET": "#D55E00",
    "MISSING_IN_EXPORT": "#E69F00",
    "AMOUNT_MISMATCH": "#CC79A7",
    "CURRENCY_MISMATCH": "#0072B2",
    "STATUS_MISMATCH": "#009E73",
    "DOUBLE_APPLIED": "#000000",
    "LIVE_RESPONSE_MISMATCH": "#56B4E9",
    "SLOW_RESPONSE": "#999999",
}
_W, _H, _LEFT, _BOTTOM, _TOP = 720, 190, 90, 34, 12


def colour(kind: str) -> str:
    return KIND_COLOURS.get(kind, "#777777")


def stacked_bars(
    series: Series, values: Mapping[str, Sequence[int]], *, title: str, exponent: int | None = None
) -> Markup:
    """Bars per time bucket, stacked by kind; ``exponent`` formats money on the axis."""
    n = len(series.starts)
    if n == 0 or not values:
        return Markup('<p class="empty">No timed divergences.</p>')
    totals = [sum(v[i] for v in values.values()) for i in range(n)]
    top = max(max(totals), 1)
    plot_w, plot_h = _W - _LEFT - 10, _H - _BOTTOM - _TOP
    step = plot_w / n
    bar = max(step * 0.8, 1.0)

    def fmt(v: int) -> str:
        return str(v) if exponent is None else format_amount(v, exponent)

    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    parts += _axis(top, plot_h, fmt)
    for i in range(n):
        x, base = _LEFT + i * step, float(_TOP + plot_h)
        for kind, counts in values.items():
            if not counts[i]:
                continue
            h = plot_h * counts[i] / top
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour(kind)}"><title>{escape(series.starts[i])} '
                f"{escape(kind)}: {escape(fmt(counts[i]))}</title></rect>"
            )
    for i in sorted({0, n // 2, n - 1}):
        label = series.starts[i].replace("T", " ").removesuffix("Z")
        parts.append(
            f'<text class="tick" x="{_LEFT + i * step:.1f}" y="{_H - 14}">'
            f"{escape(label[5:16])}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis(top: int, plot_h: int, fmt: Callable[[int], str]) -> list[str]:
    """Grid lines and labels at 0, half and the top, each value once (whole units only)."""
    parts = []
    for value in sorted({0, top // 2, top}):
        y = _TOP + plot_h * (1 - value / top)
        parts.append(f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_W - 10}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    return parts


def latency_histogram(latency: Latency | None, slow_ms: int = 3000) -> Markup:
    """Answers per latency bucket, with a red line where the aggregator's patience ends."""
    if latency is None or not latency.histogram:
        return Markup('<p class="empty">No latency recorded.</p>')
    buckets = latency.histogram
    top = max(max(c for _, c in buckets), 1)
    plot_w, plot_h = _W - _LEFT - 10, _H - _BOTTOM - _TOP
    step = plot_w / len(buckets)
    title = "Live answers by latency"
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{title}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{title}</title>'
    ]
    parts += _axis(top, plot_h, str)
    line_x: float | None = None
    previous = 0
    for i, (le, count) in enumerate(buckets):
        x = _LEFT + i * step
        h = plot_h * count / top
        slow = le is None or le > slow_ms
        label = f"≤ {le:,} ms" if le is not None else f"> {previous:,} ms"
        parts.append(
            f'<rect x="{x + step * 0.1:.1f}" y="{_TOP + plot_h - h:.1f}" '
            f'width="{step * 0.8:.1f}" height="{h:.1f}" '
            f'fill="{"#D55E00" if slow else "#0072B2"}">'
            f"<title>{escape(label)}: {count}</title></rect>"
        )
        parts.append(
            f'<text class="tick" x="{x + step / 2:.1f}" y="{_H - 14}" '
            f'text-anchor="middle">{escape(label.replace(" ms", ""))}</text>'
        )
        if le is not None and le <= slow_ms:
            line_x = x + step
        previous = le or previous
    if line_x is not None:
        parts.append(
            f'<line class="limit" x1="{line_x:.1f}" y1="{_TOP - 4}" x2="{line_x:.1f}" '
            f'y2="{_TOP + plot_h}"/><text class="limit" x="{line_x + 4:.1f}" '
            f'y="{_TOP + 8}">3 s</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
