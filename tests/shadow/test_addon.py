"""The capture addon fed with tflow flows through taddons.context(), read back as Parquet."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import exceptions, flow, http
from mitmproxy.test import taddons, tflow, tutils

from shadow import addon as addon_module
from shadow.addon import CaptureAddon, aggregator_of, client_addr
from shadow.dataset import read_captures, read_captures_pandas

T0 = datetime(2024, 5, 17, 13, 59, 59, 250000, tzinfo=UTC).timestamp()
ADDON_PATH = Path(addon_module.__file__)


def bet(txid: str = "tx-1", **extra: Any) -> bytes:
    doc = {"event": "bet", "transaction_id": txid, "session_id": "s1", "player_id": "p1"}
    doc.update(extra)
    return json.dumps(doc).encode()


def make_flow(
    body: bytes | None = None,
    *,
    path: str = "/rgs/acme",
    peer: tuple[Any, ...] = ("10.1.2.3", 40000),
    start: float = T0,
    resp_body: bytes | None = b'{"status":"OK","balance":"90.00"}',
    status: int = 200,
    error: str | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (
        (b"Content-Type", b"application/json"),
        (b"X-RGS-Signature", b"sha256=abc"),
    ),
) -> http.HTTPFlow:
    req = tutils.treq(
        method=b"POST",
        path=path.encode(),
        headers=http.Headers(headers),
        content=bet() if body is None else body,
        timestamp_start=start,
        timestamp_end=start + 0.001,
    )
    resp: bool | http.Response = False
    if error is None:
        resp = tutils.tresp(
            status_code=status,
            headers=http.Headers(((b"content-type", b"application/json"),)),
            content=resp_body,
            timestamp_start=start + 0.010,
            timestamp_end=start + 0.0125,
        )
    err: bool | flow.Error = False
    if error is not None:
        err = flow.Error(error)
        err.timestamp = start + 0.5
    conn = tflow.tclient_conn()
    conn.peername = peer
    return tflow.tflow(req=req, resp=resp, err=err, client_conn=conn)


@pytest.fixture
def capture_dir(tmp_path: Path) -> Path:
    return tmp_path / "captures"


@pytest.fixture
def capture(capture_dir: Path) -> Iterator[tuple[CaptureAddon, Any]]:
    """A started addon in a taddons context; drained (``done``) at the end."""
    addon = CaptureAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, capture_dir=str(capture_dir), capture_proxy_id="test")
        try:
            yield addon, tctx
        finally:
            addon.done()


def feed(addon: CaptureAddon, *flows: http.HTTPFlow) -> None:
    for f in flows:
        addon.request(f)
        if f.error is not None:
            addon.error(f)
        else:
            addon.response(f)


def rows(capture_dir: Path, addon: CaptureAddon) -> list[dict[str, Any]]:
    """Drain the addon and read every captured row back (nulls as None)."""
    addon.done()
    return read_captures(capture_dir).to_pylist()


def test_every_column_of_a_proxied_bet(capture: Any, capture_dir: Path) -> None:
    addon, _ = capture
    f = make_flow(path="/rgs/acme?x=1")
    feed(addon, f)
    [row] = rows(capture_dir, addon)
    assert row["capture_id"] == f.id
    assert row["captured_at"] == datetime.fromtimestamp(T0, UTC)
    assert row["client_addr"] == "10.1.2.3:40000"
    assert row["method"] == "POST"
    assert row["path"] == "/rgs/acme?x=1"
    assert row["aggregator"] == "acme"
    headers = json.loads(row["request_headers"])
    assert headers["x-rgs-signature"] == "sha256=abc"
    assert headers["content-type"] == "application/json"
    assert row["request_body"] == bet()
    assert row["response_status"] == 200
    assert json.loads(row["response_headers"]) == {"content-type": "application/json"}
    assert row["response_body"] == b'{"status":"OK","balance":"90.00"}'
    assert row["latency_ms"] == pytest.approx(12.5, abs=0.01)
    assert row["error"] is None
    assert row["transaction_id"] == "tx-1"
    assert row["event"] == "bet"
    assert not row["network_duplicate"]
    assert row["request_body_length"] == len(bet())
    assert row["response_body_length"] == len(b'{"status":"OK","balance":"90.00"}')
    assert row["proxy_id"] == "test"
    assert (row["date"], row["hour"]) == ("2024-05-17", "13")


def test_upstream_down_is_captured_with_the_error_and_no_response(
    capture: Any, capture_dir: Path
) -> None:
    addon, _ = capture
    feed(addon, make_flow(error="Connection refused"))
    [row] = rows(capture_dir, addon)
    assert row["error"] == "Connection refused"
    assert row["response_status"] is None
    assert row["response_headers"] is None
    assert row["response_body"] is None
    assert row["latency_ms"] == pytest.approx(500.0, abs=0.01)
    assert row["transaction_id"] == "tx-1"


def test_a_body_that_is_not_json_is_captured_with_null_ids(capture: Any, capture_dir: Path) -> None:
    addon, _ = capture
    feed(addon, make_flow(b"\x00\xffnot json at all", resp_body=b"<html>502</html>", status=502))
    [row] = rows(capture_dir, addon)
    assert row["request_body"] == b"\x00\xffnot json at all"
    assert row["transaction_id"] is None
    assert row["event"] is None
    assert row["response_status"] == 502
    assert row["response_body"] == b"<html>502</html>"


def test_huge_bodies_are_capped_and_keep_their_length(
    capture_dir: Path,
) -> None:
    addon = CaptureAddon()
    big = bet("tx-big", padding="x" * 300_000)
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon, capture_dir=str(capture_dir), capture_proxy_id="t", capture_body_cap=1000
        )
        feed(addon, make_flow(big, resp_body=b"y" * 5000))
        [row] = rows(capture_dir, addon)
    assert row["request_body"] == big[:1000]
    assert row["request_body_length"] == len(big)
    assert row["response_body"] == b"y" * 1000
    assert row["response_body_length"] == 5000
    assert row["transaction_id"] == "tx-big"  # identified before capping


def test_ipv6_peers_are_bracketed(capture: Any, capture_dir: Path) -> None:
    addon, _ = capture
    feed(addon, make_flow(peer=("::1", 51234, 0, 0)))
    [row] = rows(capture_dir, addon)
    assert row["client_addr"] == "[::1]:51234"
    assert client_addr(("127.0.0.1", 8)) == "127.0.0.1:8"
    assert client_addr(None) is None


def test_retries_from_another_address_are_network_duplicates(
    capture: Any, capture_dir: Path
) -> None:
    addon, _ = capture
    first = make_flow(peer=("127.0.0.1", 1000))
    retry = make_flow(peer=("127.0.0.2", 2000), start=T0 + 5)
    other_aggregator = make_flow(path="/rgs/other", start=T0 + 6)
    feed(addon, first, retry, other_aggregator)
    by_id = {r["capture_id"]: r for r in rows(capture_dir, addon)}
    assert not by_id[first.id]["network_duplicate"]
    assert by_id[retry.id]["network_duplicate"]
    assert by_id[retry.id]["client_addr"] == "127.0.0.2:2000"
    assert not by_id[other_aggregator.id]["network_duplicate"]


def test_seen_ids_survive_a_restart(capture_dir: Path) -> None:
    now = datetime.now(UTC).timestamp()
    for round_no in range(2):
        addon = CaptureAddon()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, capture_dir=str(capture_dir), capture_proxy_id="p")
            feed(addon, make_flow(start=now + round_no))
            addon.done()
    frame = read_captures_pandas(capture_dir).sort_values("captured_at")
    assert list(frame["network_duplicate"]) == [False, True]


def test_redaction_hashes_headers_and_body_fields_with_a_key(
    capture_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGS_SHADOW_REDACT_KEY", "k1")
    addon = CaptureAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            capture_dir=str(capture_dir),
            capture_proxy_id="r",
            capture_redact_headers=["Authorization"],
            capture_redact_body_fields=["player_id"],
        )
        hdrs = ((b"Authorization", b"Bearer s3cret"), (b"X-RGS-Signature", b"sha256=abc"))
        feed(
            addon,
            make_flow(bet("a"), headers=hdrs),
            make_flow(bet("b"), headers=hdrs, start=T0 + 1),
            make_flow(bet("c", player_id="p2"), headers=hdrs, start=T0 + 2),
        )
        got = sorted(rows(capture_dir, addon), key=lambda r: r["captured_at"])
    auths = [json.loads(r["request_headers"])["authorization"] for r in got]
    assert auths[0] == auths[1] and auths[0].startswith("REDACTED-") and "s3cret" not in auths[0]
    assert json.loads(got[0]["request_headers"])["x-rgs-signature"] == "sha256=abc"
    players = [json.loads(r["request_body"])["player_id"] for r in got]
    assert players[0] == players[1] != players[2]
    assert all(p.startswith("REDACTED-") and len(p) == len("REDACTED-") + 64 for p in players)
    assert [r["transaction_id"] for r in got] == ["a", "b", "c"]
    assert got[0]["request_body_length"] == len(bet("a"))


def test_redaction_without_its_key_refuses_to_start(capture_dir: Path) -> None:
    addon = CaptureAddon()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="RGS_SHADOW_REDACT_KEY"):
            tctx.configure(
                addon, capture_dir=str(capture_dir), capture_redact_headers=["authorization"]
            )


def test_config_sets_dialects_and_unknown_capture_keys_are_named(
    tmp_path: Path, capture_dir: Path
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(
        '[aggregators.acme]\ndialect = "generic"\nsecret_env = "X"\n'
        '[capture]\nbody_cap_bytes = 10\nproxy_id = "cfg"\n'
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[aggregators.acme]\nsecret_env = "X"\n[capture]\nbody_cap = 10\n')
    addon = CaptureAddon()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"capture\.body_cap: unknown key"):
            tctx.configure(addon, capture_dir=str(capture_dir), capture_config=str(bad))
        tctx.configure(addon, capture_dir=str(capture_dir), capture_config=str(good))
        feed(addon, make_flow())
        [row] = rows(capture_dir, addon)
    assert row["request_body"] == bet()[:10]
    assert row["proxy_id"] == "cfg"


def test_without_a_capture_dir_nothing_starts_and_running_logs_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    addon = CaptureAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, capture_body_cap=5)
        assert addon.writer is None
        addon.running()
    assert "capture_dir: required" in caplog.text


def _failing_append(payload: bytes) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_write_failure_passes_traffic_and_says_so(
    capture: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    addon, _ = capture
    original = addon.writer.append
    addon.writer.append = _failing_append
    f = make_flow()
    feed(addon, f)
    assert f.response.status_code == 200
    err = capsys.readouterr().err
    assert "cannot write the capture spool" in err and "UNRECORDED" in err
    addon.writer.append = original
    feed(addon, make_flow(start=T0 + 1))
    assert not addon.failing
    assert "writable again" in capsys.readouterr().err


def test_write_failure_with_stop_answers_503_until_writable(
    capture_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    addon = CaptureAddon()
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            capture_dir=str(capture_dir),
            capture_proxy_id="s",
            capture_on_write_failure="stop",
        )
        original = addon.writer.append
        addon.writer.append = _failing_append
        first = make_flow()
        feed(addon, first)
        assert first.response.status_code == 503
        assert "RETRY_LATER" in first.response.text
        blocked = make_flow(start=T0 + 1)
        addon.request(blocked)  # refused before it could reach the wallet
        assert blocked.response is not None and blocked.response.status_code == 503
        assert "answering 503" in capsys.readouterr().err
        addon.writer.append = original
        addon.response(blocked)  # the refused exchange itself is recorded once writable
        assert not addon.failing
        resumed = make_flow(start=T0 + 2)
        addon.request(resumed)
        assert resumed.response.status_code == 200
        [row] = rows(capture_dir, addon)
    assert row["response_status"] == 503
    assert "not writable" in row["error"]


def test_hooks_never_raise_on_a_broken_flow(
    capture: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    addon, _ = capture
    f = make_flow()
    f.request.timestamp_start = None  # type: ignore[assignment]
    addon.response(f)
    assert "could not build the capture record" in capsys.readouterr().err


def test_aggregator_comes_from_the_path() -> None:
    assert aggregator_of("/rgs/acme") == "acme"
    assert aggregator_of("/rgs/acme/extra?q=1") == "acme"
    assert aggregator_of("/rgs/") is None
    assert aggregator_of("/healthz") is None


def test_loads_as_a_mitmdump_script(capture_dir: Path) -> None:
    with taddons.context() as tctx:
        tctx.options.set(f"capture_dir={capture_dir}", "capture_proxy_id=script", defer=True)
        module = tctx.script(str(ADDON_PATH))
        [script_addon] = module.addons
        assert type(script_addon).__name__ == "CaptureAddon"
        assert (capture_dir / "_spool" / "script.lock").exists()
        script_addon.done()


def test_hostile_text_cannot_jam_compaction(capture: Any, capture_dir: Path) -> None:
    addon, _ = capture
    lone_surrogate = b'{"event": "bet", "transaction_id": "\\ud800x"}'
    f = make_flow(lone_surrogate)
    f.request.path = "/rgs/acme/\udcff"  # undecodable path bytes, as mitmproxy escapes them
    feed(addon, f, make_flow(start=T0 + 1))
    got = sorted(rows(capture_dir, addon), key=lambda r: r["captured_at"])
    assert len(got) == 2
    assert got[0]["transaction_id"] == "\ufffdx"
    assert got[0]["request_body"] == lone_surrogate
    assert got[1]["transaction_id"] == "tx-1"
