"""The HTML page: one self-contained file, autoescaped, data embedded safely."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports.html import ROW_COLUMNS, embed_json, render_html, write_html
from reports.model import Report
from reports.testing import IMG_PAYLOAD, SCRIPT_PAYLOAD


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each script element."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> Elements:
    parser = Elements()
    parser.feed(page)
    return parser


def block(page: str, block_id: str) -> object:
    match = re.search(
        rf'<script type="application/json" id="{block_id}" '
        rf'data-encoding="([^"]+)">(.*?)</script>',
        page,
        re.S,
    )
    assert match, block_id
    encoding, text = match.groups()
    if encoding == "gzip+base64":
        text = gzip.decompress(base64.b64decode(text)).decode()
    return json.loads(text)


def test_page_is_self_contained(report: Report) -> None:
    page = render_html(report)
    elements = parse(page)
    names = [tag for tag, _ in elements.tags]
    assert names.count("script") == 3
    assert not {"link", "img", "iframe", "object", "embed"} & set(names)
    assert not any(
        "src" in attrs or "href" in attrs and not str(attrs["href"]).startswith("#")
        for _, attrs in elements.tags
    )
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page


def test_policy_allows_only_our_script_by_hash(report: Report) -> None:
    page = render_html(report)
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert policy and "default-src 'none'" in policy.group(1)
    code = parse(page).scripts[2]
    digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy.group(1)
    assert "unsafe-inline'; img" not in policy.group(1).split("script-src")[1].split(";")[0]


def test_hostile_values_are_escaped_in_the_summary(report: Report) -> None:
    page = render_html(report)
    body = page.split('<script type="application/json"')[0]
    assert SCRIPT_PAYLOAD not in page
    assert IMG_PAYLOAD not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in body


def test_embedded_rows_round_trip_and_cannot_close_the_script(report: Report) -> None:
    page = render_html(report)
    data = block(page, "rows-data")
    assert isinstance(data, dict)
    assert data["columns"] == list(ROW_COLUMNS)
    assert len(data["rows"]) == 10
    players = {row[ROW_COLUMNS.index("player_id")] for row in data["rows"]}
    assert SCRIPT_PAYLOAD in players
    assert page.lower().count("</script") == 3


def test_evidence_block_holds_captures_decisions_and_exports(report: Report) -> None:
    evidence = block(render_html(report), "evidence-data")
    assert isinstance(evidence, dict)
    capture = evidence["captures"]["c-0004"]
    assert SCRIPT_PAYLOAD in capture[4] and IMG_PAYLOAD in capture[4]
    assert ["authorization", "[redacted]"] in capture[3]
    assert ["code", "PLAYER_BLOCKED"] in evidence["decisions"]["c-0004"]
    assert ["outcome", "REJECTED"] in evidence["decisions"]["c-0004"]
    assert ["player_id", SCRIPT_PAYLOAD] not in evidence["decisions"]["c-0004"]  # in the capture
    assert evidence["exports"]["tx-0020"][0][0] == ["round_id", "r-08"]


def test_large_blocks_are_gzipped_and_decode_to_the_same_data(report: Report) -> None:
    plain = render_html(report)
    packed = render_html(report, compress_above=0)
    assert 'id="rows-data" data-encoding="gzip+base64"' in packed
    assert block(packed, "rows-data") == block(plain, "rows-data")
    assert block(packed, "evidence-data") == block(plain, "evidence-data")


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "a\u2028b", "&"])
def test_embed_json_leaves_no_markup(text: str) -> None:
    encoding, out = embed_json({"v": text})
    assert encoding == "json"
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(str(out)) == {"v": text}


def test_charts_filters_and_detail_are_present(report: Report) -> None:
    page = render_html(report)
    assert page.count('<svg class="chart"') == 5  # counts, EUR/JPY/BTC money, latency
    assert 'class="limit"' in page  # the 3 s line
    for select in ('id="f-kind"', 'id="f-currency"', 'id="f-player"', 'data-sort="at"'):
        assert select in page
    assert '<option value="DOUBLE_APPLIED">' in page
    assert 'href="#d-4"' in page  # the examples link to their detail view


def test_write_html_returns_the_size(report: Report, tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    assert write_html(report, path) == path.stat().st_size
