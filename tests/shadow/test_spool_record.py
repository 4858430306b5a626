"""The hook's spool record and its completion in the compactor: the same row as before."""

from __future__ import annotations

import marshal

import pytest

from shadow.capture_record import CaptureRecord, encode_record
from shadow.spool_record import (
    Identifier,
    SpoolRecord,
    client_addr,
    decode_payload,
    encode_spool_record,
)

BODY = b'{"event": "bet", "transaction_id": "tx-9"}'


def spool_record(**changes: object) -> SpoolRecord:
    record = SpoolRecord(
        capture_id="c1",
        started=1_700_000_000.25,
        peername=("::1", 5000, 0, 0),
        method="POST",
        path="/rgs/acme?x=1",
        request_headers=((b"Content-Type", b"application/json"),),
        request_body=BODY,
        response_status=200,
        response_headers=(),
        response_body=b"ok",
        ended=1_700_000_000.2625,
        error=None,
        identified=False,
        transaction_id=None,
        event=None,
        request_body_length=len(BODY),
        response_body_length=2,
        proxy_id="p1",
    )
    return record._replace(**changes)


def test_the_compactor_computes_what_the_hook_left_out() -> None:
    row = decode_payload(encode_spool_record(spool_record()), Identifier({}))
    assert row.captured_at == 1_700_000_000_250_000
    assert row.client_addr == "[::1]:5000"
    assert row.aggregator == "acme"
    assert row.latency_ms == pytest.approx(12.5, abs=0.001)
    assert (row.transaction_id, row.event) == ("tx-9", "bet")
    assert row.request_headers == ((b"Content-Type", b"application/json"),)
    assert row.network_duplicate is False


def test_ids_the_hook_identified_are_kept_as_they_are() -> None:
    record = spool_record(identified=True, transaction_id="REDACTED-x", event="win")
    row = decode_payload(encode_spool_record(record), Identifier({}))
    assert (row.transaction_id, row.event) == ("REDACTED-x", "win")


def test_finished_rows_of_the_earlier_form_still_decode() -> None:
    row = decode_payload(encode_spool_record(spool_record()), Identifier({}))
    assert decode_payload(encode_record(row), Identifier({})) == row
    assert isinstance(row, CaptureRecord)


@pytest.mark.parametrize(
    "payload",
    [
        b"not marshal",
        marshal.dumps((9, "x")),
        marshal.dumps((2, "too", "few")),
        encode_spool_record(spool_record(started=None)),
    ],
)
def test_anything_else_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode_payload(payload, Identifier({}))


def test_client_addresses() -> None:
    assert client_addr(("127.0.0.1", 8)) == "127.0.0.1:8"
    assert client_addr(None) is None
