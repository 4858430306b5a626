"""The HTML page in headless Chromium (Debian's package, driven by Playwright's pip driver).

Checks what only a browser can: the script runs without console errors, nothing is
fetched, the filters narrow the table, hostile traffic stays text in the detail view,
and the page looks right (the screenshot goes to docs/report.png for the README).
No browser is ever downloaded: without /usr/bin/chromium the tests skip, except in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reports.html import write_html
from reports.model import Report
from reports.testing import IMG_PAYLOAD, SCRIPT_PAYLOAD
from tests.conftest import in_ci

CHROMIUM = Path(os.environ.get("RGS_SHADOW_CHROMIUM", "/usr/bin/chromium"))
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "report.png"

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None or not CHROMIUM.exists():
    reason = "needs playwright (pip) and Debian's chromium at " + str(CHROMIUM)
    if in_ci():
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with everything that must not happen recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def shown(self) -> str:
        return self.page.inner_text("#shown")

    def rows(self) -> int:
        return self.page.locator("#rows tr").count()


def open_page(browser: Browser, report: Report, path: Path, **options: int) -> Watched:
    write_html(report, path, **options)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    watched = Watched(page)
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-rendered]")
    return watched


@pytest.mark.parametrize("compress_above", [1_000_000, 0], ids=["json", "gzip"])
def test_page_loads_without_errors_or_requests(
    browser: Browser, report: Report, tmp_path: Path, compress_above: int
) -> None:
    path = tmp_path / "report.html"
    watched = open_page(browser, report, path, compress_above=compress_above)
    watched.page.goto(path.as_uri() + "#d-0")
    watched.page.wait_for_selector("#detail:not([hidden]) .evidence")
    assert watched.shown() == "10 of 10 divergences"
    assert watched.errors == []
    assert watched.requests == [path.as_uri()]
    watched.page.close()


def test_filters_narrow_the_table(browser: Browser, report: Report, tmp_path: Path) -> None:
    watched = open_page(browser, report, tmp_path / "report.html")
    page = watched.page
    assert watched.rows() == 10
    page.select_option("#f-kind", "DOUBLE_APPLIED")
    assert watched.shown() == "2 of 10 divergences"
    assert set(page.locator("#rows tr td:nth-child(2)").all_inner_texts()) == {"DOUBLE_APPLIED"}
    page.click("#f-reset")
    page.select_option("#f-currency", "JPY")
    assert watched.rows() == 1
    page.click("#f-reset")
    page.fill("#f-player", "bob")
    assert watched.shown() == "3 of 10 divergences"
    page.click("#f-reset")
    page.click('button[data-filter-kind="SLOW_RESPONSE"]')  # a click in the kind table
    assert watched.shown() == "2 of 10 divergences"
    assert page.input_value("#f-kind") == "SLOW_RESPONSE"
    assert watched.errors == []
    page.close()


def test_sorting_by_money_at_risk(browser: Browser, report: Report, tmp_path: Path) -> None:
    watched = open_page(browser, report, tmp_path / "report.html")
    page = watched.page
    page.click('button[data-sort="amount_at_risk_minor"]')
    page.click('button[data-sort="amount_at_risk_minor"]')  # descending within each currency
    amounts = page.locator("#rows tr td:nth-child(7)").all_inner_texts()
    assert amounts[:3] == ["BTC 0.00150000", "EUR 50.00", "EUR 25.50"]
    page.close()


def test_hostile_traffic_renders_as_text(browser: Browser, report: Report, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    watched = open_page(browser, report, path)
    page = watched.page
    page.click("#rows tr:has-text('tx-0020') a")
    page.wait_for_selector("#detail:not([hidden]) .evidence")
    detail = page.inner_text("#detail")
    assert SCRIPT_PAYLOAD in detail
    assert IMG_PAYLOAD.replace('"', '\\"') in detail  # inside the pretty-printed JSON body
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 3
    assert page.evaluate("document.querySelectorAll('#detail *[onerror]').length") == 0
    row_cells = page.locator("#rows tr:has-text('tx-0020') td").all_inner_texts()
    assert SCRIPT_PAYLOAD in row_cells
    assert watched.dialogs == []
    assert watched.errors == []
    assert watched.requests == [path.as_uri()]
    page.set_viewport_size({"width": 1200, "height": 900})
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-rendered]")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    assert SCREENSHOT.stat().st_size > 10_000
    page.close()
