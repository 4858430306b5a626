"""Benchmark: the HTML report for 100,000 divergences, its size and time to open in Chromium.

    python bench/report.py [--count 100000] [--runs 3] [--write BENCHMARKS.md]

The target (issue 7) is under 20 MB and under 3 s to open.  Times are measured in the
page (``performance.now()`` since navigation start, so browser start-up is not counted)
and next to a baseline measured in the same run: a trivial HTML file opened the same
way, so a slow machine shows as a slow baseline rather than a slow report.  Not a test:
timings depend on the machine.  Needs Debian's chromium and Playwright (pip); no browser
is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reports.html import write_html
from reports.model import load_report
from reports.testing import write_synthetic

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BEGIN, END = "<!-- bench/report.py: begin -->", "<!-- bench/report.py: end -->"


def open_times(
    browser: Any, url: str, *, marker: str | None, detail: str | None
) -> dict[str, float]:
    """Milliseconds from navigation start to the load event, first rows and a detail view."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url, wait_until="load", timeout=120_000)
    out = {"load": page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")}
    if marker:
        page.wait_for_selector(marker, timeout=120_000)
        out["rows"] = float(page.get_attribute("body", "data-rendered-ms") or "nan")
    out["wall"] = (time.perf_counter() - started) * 1000
    if detail:
        started = time.perf_counter()
        page.evaluate(f"location.hash = '{detail}'")
        page.wait_for_selector("#detail:not([hidden]) .evidence", timeout=120_000)
        out["detail"] = (time.perf_counter() - started) * 1000
    context.close()
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {chromium.strip() or 'chromium ?'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", type=Path, help="replace this script's section of the file")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        directory = write_synthetic(root, args.count)
        t1 = time.perf_counter()
        report = load_report(directory)
        t2 = time.perf_counter()
        page = root / "report.html"
        size = write_html(report, page)
        t3 = time.perf_counter()
        trivial = root / "trivial.html"
        trivial.write_text("<!DOCTYPE html><title>t</title><p>baseline</p>")
        runs: dict[str, list[dict[str, float]]] = {"baseline": [], "report": []}
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(args.runs):
                runs["baseline"].append(
                    open_times(browser, trivial.as_uri(), marker=None, detail=None)
                )
                runs["report"].append(
                    open_times(
                        browser,
                        page.as_uri(),
                        marker="body[data-rendered]",
                        detail=f"#d-{args.count // 2}",
                    )
                )
            browser.close()

    def med(which: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[which])

    lines = [
        f"divergences: {args.count:,}; inputs written in {t1 - t0:.1f} s",
        f"report model built in {t2 - t1:.1f} s; HTML rendered and written in {t3 - t2:.1f} s",
        f"HTML size: {size:,} bytes ({size / 1e6:.1f} MB; target < 20 MB)",
        f"open, median of {args.runs} (ms since navigation start):",
        f"  baseline trivial page: load event {med('baseline', 'load'):.0f}, "
        f"wall {med('baseline', 'wall'):.0f}",
        f"  report: load event {med('report', 'load'):.0f}, first rows "
        f"{med('report', 'rows'):.0f} (target < 3000), wall {med('report', 'wall'):.0f}",
        f"  first detail view (inflates the evidence): {med('report', 'detail'):.0f}",
        f"machine: {machine()} (shared with other work while measured)",
        "command: python bench/report.py " + " ".join(sys.argv[1:]),
    ]
    print("\n".join(lines))
    if args.write:
        section = "\n".join([BEGIN, "```", *lines, "```", END])
        text = args.write.read_text() if args.write.exists() else "# Benchmarks\n"
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n## HTML report (bench/report.py)\n\n" + section + "\n"
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
