"""Must-show 4: generated hostile input against a real server never gets a 5xx other than
RETRY_LATER and never changes a balance.

Every generated request is invalid by construction (one corruption of a valid,
signed bet for a funded player with an open session), so any balance change is a
bug.  The corruptions: malformed JSON, wrong types, huge and tiny numbers, invalid
UTF-8, missing or wrong signatures, unknown aggregators, and operator calls without
the token; a 10 MB body is sent once, streamed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests._server import Server
from wallet_core.testing import CallbackFactory

pytestmark = pytest.mark.slow

FACTORY = CallbackFactory(defaults={"session_id": "s1", "player_id": "p1", "currency": "EUR"})
BASE: dict[str, Any] = {
    "event": "bet",
    "session_id": "s1",
    "player_id": "p1",
    "currency": "EUR",
    "transaction_id": "t1",
    "round_id": "r1",
    "amount": "1.00",
    "timestamp": "2026-11-25T12:00:00Z",
}
REQUIRED = sorted(BASE)
OPENING = "50.00"

wrong_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_amounts = st.one_of(
    st.integers(min_value=2**63, max_value=10**40).map(str),  # beyond 64 bits
    st.integers(min_value=1, max_value=10**9).map(lambda n: f"0.{n:012d}"),  # too precise
    st.sampled_from(
        [
            "0",
            "0.00",
            "-1.00",
            "1e3",
            "1E-9",
            "+1.00",
            " 1.00",
            "1.",
            ".5",
            "NaN",
            "Infinity",
            "-0",
            "01.00",
            "1,00",
            "",
            "1.000",
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False),  # a JSON number, never a string
    st.integers(min_value=-(10**30), max_value=10**30),
)


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, str, dict[str, str], bytes]:
    """``(method, path, headers, body)`` of one invalid request."""
    kind = draw(
        st.sampled_from(
            ["type", "amount", "bytes", "utf8", "signature", "aggregator", "admin", "event"]
        )
    )
    doc = dict(BASE, transaction_id=draw(st.text("abcdef0123456789", min_size=1, max_size=12)))
    if kind == "type":
        doc[draw(st.sampled_from(REQUIRED))] = draw(wrong_values)
    elif kind == "amount":
        doc["amount"] = draw(bad_amounts)
    elif kind == "event":
        doc["event"] = draw(
            st.text(max_size=8).filter(
                lambda e: e not in {"bet", "win", "refund", "settle", "balance"}
            )
        )
    body = json.dumps(doc).encode()
    if kind == "bytes":
        cut = draw(st.integers(min_value=1, max_value=len(body) - 1))
        body = draw(st.sampled_from([body[:cut], body[cut:], b"", b"[]", b"null", b"{" * 5000]))
        body = body or draw(st.binary(max_size=200).filter(lambda b: not b.startswith(b"{")))
    elif kind == "utf8":
        at = draw(st.integers(min_value=1, max_value=len(body) - 2))
        body = (
            body[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
            + body[at:]
        )
    headers = FACTORY.sign(body)
    path = "/rgs/default"
    if kind == "signature":
        headers = draw(
            st.sampled_from(
                [
                    {},
                    {"x-rgs-signature": "sha256=" + "0" * 64},
                    {"x-rgs-signature": headers["x-rgs-signature"].replace("sha256=", "md5=")},
                    {"x-rgs-signature": _flip_last(headers["x-rgs-signature"])},
                    {"x-rgs-signature": "sha256="},
                ]
            )
        ) | {"content-type": "application/json"}
    elif kind == "aggregator":
        path = "/rgs/" + draw(
            st.text("abcxyz-_.~%20", min_size=1, max_size=12).filter(lambda a: a != "default")
        )
    if kind == "admin":
        method, path, payload = draw(
            st.sampled_from(
                [
                    (
                        "POST",
                        "/admin/adjustments",
                        {
                            "reference": "x",
                            "player_id": "p1",
                            "currency": "EUR",
                            "amount": "-50.00",
                        },
                    ),
                    (
                        "POST",
                        "/admin/adjustments",
                        {
                            "reference": "y",
                            "player_id": "p1",
                            "currency": "EUR",
                            "amount": "1000.00",
                        },
                    ),
                    ("DELETE", "/admin/sessions/s1", None),
                    (
                        "POST",
                        "/admin/sessions",
                        {
                            "session_id": "s1",
                            "player_id": "p2",
                            "currency": "EUR",
                            "aggregator": "default",
                        },
                    ),
                    ("GET", "/admin/balances/p1/EUR", None),
                ]
            )
        )
        auth = draw(
            st.sampled_from(
                [{}, {"authorization": "Bearer nope"}, {"authorization": "admin-token"}]
            )
        )
        return method, path, auth, json.dumps(payload).encode() if payload else b""
    return "POST", path, headers, body


def _flip_last(signature: str) -> str:
    return signature[:-1] + ("1" if signature.endswith("0") else "0")


def _check(response: httpx.Response) -> None:
    if response.status_code >= 500:
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "RETRY_LATER" and response.headers["retry-after"]


@pytest.fixture
def server(store_url: str) -> Iterator[Server]:
    with Server(store_url) as running:
        doc = {"session_id": "s1", "player_id": "p1", "currency": "EUR", "aggregator": "default"}
        assert running.admin("POST", "/admin/sessions", json=doc).status_code == 201
        deposit = {"reference": "open", "player_id": "p1", "currency": "EUR", "amount": OPENING}
        assert running.admin("POST", "/admin/adjustments", json=deposit).status_code == 200
        yield running
    assert running.proc is not None and running.proc.returncode == 0


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=hostile())
def test_hostile_requests_never_5xx_and_never_move_money(
    server: Server, request: tuple[str, str, dict[str, str], bytes]
) -> None:
    method, path, headers, body = request
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.request(method, path, headers=headers, content=body)
    _check(response)
    assert response.status_code >= 400, (response.status_code, response.text)
    assert server.balance_minor("p1") == OPENING


def test_a_10_mb_body_is_refused_without_buffering_it(server: Server) -> None:
    def ten_megabytes() -> Iterator[bytes]:
        chunk = b'{"event":"bet"' + b" " * (64 * 1024)
        for _ in range(160):
            yield chunk

    peak_before = _peak_rss_kib(server.pid)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.post("/rgs/default", content=ten_megabytes())
        signed = client.post(
            "/rgs/default", content=b"x" * 10_000_000, headers=FACTORY.sign(b"x" * 10_000_000)
        )
    for answer in (response, signed):
        assert answer.status_code == 413 and answer.json()["code"] == "BAD_REQUEST"
    assert server.balance_minor("p1") == OPENING
    grown_mib = (_peak_rss_kib(server.pid) - peak_before) / 1024
    assert grown_mib < 8, f"the server's peak memory grew {grown_mib:.1f} MiB"


def _peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")
