"""Records to Arrow: every column in the contract's schema, hostile text stored, not fatal."""

from __future__ import annotations

import pyarrow as pa

from shadow.capture_record import CaptureRecord, decode_record, encode_record, records_to_table
from shadow.capture_schema import CAPTURE_SCHEMA


def record(i: int, path: str = "/rgs/acme") -> CaptureRecord:
    return CaptureRecord(
        f"c{i}",
        1_700_000_000_000_000 + i,
        "10.0.0.1:5000",
        "POST",
        path,
        "acme",
        (("Content-Type", "application/json"), ("X-Tag", "a"), ("x-tag", "b")),
        b'{"event":"bet"}',
        200,
        (("content-type", "application/json"),),
        b'{"status":"OK"}',
        1.5,
        None,
        f"t{i}",
        "bet",
        i % 2 == 1,
        15,
        15,
        "proxy-1",
    )


def test_rows_keep_their_values_and_headers_become_merged_json() -> None:
    table = records_to_table([record(0), record(1)])
    assert table.schema == CAPTURE_SCHEMA
    first, second = table.to_pylist()
    assert first["capture_id"] == "c0" and second["transaction_id"] == "t1"
    assert first["request_headers"] == '{"content-type":"application/json","x-tag":"a, b"}'
    assert first["response_headers"] == '{"content-type":"application/json"}'
    assert (first["network_duplicate"], second["network_duplicate"]) == (False, True)
    assert pa.compute.cast(table.column("captured_at"), pa.int64()).to_pylist() == [
        1_700_000_000_000_000,
        1_700_000_000_000_001,
    ]


def test_a_lone_surrogate_is_replaced_in_its_column_only() -> None:
    table = records_to_table([record(0, "/rgs/\ud800"), record(1)])
    assert table.column("path").to_pylist() == ["/rgs/\ufffd", "/rgs/acme"]
    assert table.column("capture_id").to_pylist() == ["c0", "c1"]


def test_no_records_make_an_empty_table_of_the_schema() -> None:
    table = records_to_table([])
    assert table.num_rows == 0 and table.schema == CAPTURE_SCHEMA


def test_a_record_survives_the_spool_encoding() -> None:
    assert decode_record(encode_record(record(3))) == record(3)


def test_header_bytes_as_the_proxy_records_them_become_the_same_json() -> None:
    raw = record(0)._replace(
        request_headers=((b"X-Tag", b"a"), (b"x-tag", b"\xff")),
        response_headers=((b"Content-Type", b"application/json"),),
    )
    [row] = records_to_table([decode_record(encode_record(raw))]).to_pylist()
    assert row["request_headers"] == '{"x-tag":"a, \ufffd"}'
    assert row["response_headers"] == '{"content-type":"application/json"}'
