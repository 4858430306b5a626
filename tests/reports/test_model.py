"""The report model: totals, rankings, series and evidence built from the fixed data set."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compare.divergence import Kind
from reports.evidence import BODY_LIMIT, capture_view
from reports.model import Report, load_report
from reports.testing import SCRIPT_PAYLOAD, FixtureDivergence, write_fixture
from wallet_core.errors import InputError


def test_verdict_totals_money_per_currency(report: Report) -> None:
    assert report.verdict.money_at_risk
    assert report.verdict.divergences == 10
    assert report.verdict.totals == ("BTC 0.00150000", "EUR 110.50", "JPY 300")


def test_kind_table_adds_up_to_the_verdict(report: Report) -> None:
    eur = sum(k.amount_at_risk_minor for k in report.kinds if k.currency == "EUR")
    assert eur == 11050
    assert sum(k.count for k in report.kinds) == 10
    assert [k.kind for k in report.kinds][0] == Kind.MISSING_IN_WALLET
    double = next(k for k in report.kinds if k.kind == Kind.DOUBLE_APPLIED)
    assert (double.count, double.at_risk) == (2, "EUR 60.00")


def test_no_money_at_risk_when_every_divergence_is_free(tmp_path: Path) -> None:
    slow = FixtureDivergence(Kind.SLOW_RESPONSE, "tx-1", "r-1", "p-1", "EUR", 0, 1)
    report = load_report(write_fixture(tmp_path, [slow]))
    assert not report.verdict.money_at_risk
    assert report.verdict.text == "NO MONEY AT RISK: 1 divergence, none moves money"


def test_summary_saying_money_at_risk_is_never_overruled(tmp_path: Path) -> None:
    slow = FixtureDivergence(Kind.SLOW_RESPONSE, "tx-1", "r-1", "p-1", "EUR", 0, 1)
    out = write_fixture(tmp_path, [slow])
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "money_at_risk": True}))
    assert load_report(out).verdict.money_at_risk


def test_worst_rounds_rank_within_each_currency(report: Report) -> None:
    eur = [(w.key, w.count, w.at_risk) for w in report.worst_rounds if w.currency == "EUR"]
    assert eur == [("r-12", 2, "EUR 50.00"), ("r-04", 1, "EUR 25.50"), ("r-11", 1, "EUR 20.00")]
    bob = next(w for w in report.worst_players if w.key == "p-bob")
    assert bob.kinds == ("MISSING_IN_WALLET", "DOUBLE_APPLIED", "SLOW_RESPONSE")


def test_examples_are_the_earliest_of_each_kind_with_all_three_sides(report: Report) -> None:
    assert list(report.examples)[:2] == ["MISSING_IN_WALLET", "MISSING_IN_EXPORT"]
    double = report.examples["DOUBLE_APPLIED"]
    assert [e.row.transaction_id for e in double] == ["tx-0007", "tx-0040"]
    evidence = double[0].evidence
    assert evidence.captures[0].capture_id == "c-0000"
    assert '"transaction_id":"tx-0007"' in evidence.captures[0].request_body
    assert ("outcome", "APPLIED") in evidence.decisions[0]
    assert ("amount_minor", "10.00 (1000 minor)") in evidence.decisions[0]
    assert ("status", "SETTLED") in evidence.exports[0]


def test_credentials_in_captured_headers_are_redacted(report: Report) -> None:
    headers = dict(report.captures["c-0000"].request_headers)
    assert headers["authorization"] == "[redacted]"
    assert headers["content-type"] == "application/json"


def test_hostile_traffic_is_kept_verbatim_for_the_renderers_to_escape(report: Report) -> None:
    row = report.examples["LIVE_RESPONSE_MISMATCH"][0].row
    assert row.player_id == SCRIPT_PAYLOAD
    assert SCRIPT_PAYLOAD in report.captures[row.capture_ids[0]].request_body


def test_series_buckets_add_up_to_counts_and_money(report: Report) -> None:
    series = report.series
    assert series.bucket_seconds == 300  # 92 minutes of divergences: 5-minute bars
    assert series.starts[0] == "2025-03-01T10:05:00Z"
    assert sum(sum(v) for v in series.counts.values()) == 10
    assert sum(series.counts["DOUBLE_APPLIED"]) == 2
    assert sum(sum(v) for v in series.at_risk_minor["EUR"].values()) == 11050
    assert "SLOW_RESPONSE" not in series.at_risk_minor["EUR"]


def test_latency_comes_from_the_summary(report: Report) -> None:
    assert report.latency is not None
    assert (report.latency.count, report.latency.over_3s) == (20, 2)
    assert report.latency.histogram[-1] == (None, 0)
    assert sum(c for _, c in report.latency.histogram) == 20


def test_cumulative_latency_histogram_becomes_answers_per_bucket(divergences_dir: Path) -> None:
    summary = json.loads((divergences_dir / "summary.json").read_text())
    assert summary["latency_ms"]["histogram"][-1] == {"le_ms": None, "count": 20}  # cumulative
    latency = load_report(divergences_dir).latency
    assert latency is not None
    assert latency.histogram == (
        (50, 1),
        (100, 12),
        (250, 3),
        (500, 1),
        (1000, 1),
        (2000, 0),
        (3000, 0),
        (5000, 2),
        (10000, 0),
        (None, 0),
    )


def test_missing_evidence_becomes_notes_not_failures(divergences_dir: Path) -> None:
    root = divergences_dir.parent
    (root / "decisions.parquet").unlink()
    (root / "export.csv").unlink()
    for part in (root / "captures").rglob("*.parquet"):
        part.unlink()
    report = load_report(divergences_dir)
    assert report.verdict.divergences == 10
    assert not report.captures and not report.decisions and not report.exports
    assert any("decisions" in n for n in report.notes)
    assert any("settlement export" in n for n in report.notes)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "summary.json").unlink(), "no summary.json"),
        (lambda d: (d / "summary.json").write_text("{"), "not JSON"),
        (lambda d: (d / "summary.json").write_text('{"version": 9}'), "summary version 9"),
        (lambda d: (d / "divergences.parquet").unlink(), "no divergences.parquet"),
        (lambda d: (d / "divergences.parquet").write_bytes(b"nope"), "unreadable Parquet"),
        (
            lambda d: pq.write_table(pa.table({"x": [1]}), d / "divergences.parquet"),
            "not a divergence file",
        ),
    ],
)
def test_bad_directory_is_one_input_error(divergences_dir: Path, damage, message: str) -> None:
    damage(divergences_dir)
    with pytest.raises(InputError, match=message):
        load_report(divergences_dir)


def test_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a directory"):
        load_report(tmp_path / "absent")


def test_bodies_decode_with_replacement_and_are_cut(report: Report) -> None:
    base = {"capture_id": "x", "request_headers": [], "response_headers": []}
    view = capture_view({**base, "request_body": b"\xff{}", "response_body": b"a" * 9000})
    assert view.request_body == "\ufffd{}"
    assert view.response_body.startswith("a" * BODY_LIMIT)
    assert view.response_body.endswith(f"[... {9000 - BODY_LIMIT} more bytes not shown]")


def test_to_dict_is_json_without_the_full_list(report: Report) -> None:
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["verdict"]["headline"] == "MONEY AT RISK"
    assert doc["kinds"][0]["at_risk"] == "EUR 25.50"
    assert "rows" not in doc and "captures" not in doc
    assert doc["examples"]["DOUBLE_APPLIED"][0]["evidence"]["captures"][0]["capture_id"] == "c-0000"
