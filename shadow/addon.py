"""The mitmproxy addon that tees every proxied callback into the capture spool.

Load it with ``mitmdump -s shadow/addon.py --set capture_dir=DIR`` or through
``rgs-shadow capture``.  The proxy stands in the live path of real money, so:

* the ``response``/``error`` hooks are plain ``def``: they copy the fields
  (:class:`~shadow.spool_record.SpoolRecord`, parsing left to the compactor),
  append one framed record to the spool with ``os.write`` and return; nothing
  else touches the disk on the event loop, and no exception leaves a hook;
* a separate compactor process (:mod:`shadow.compactor_supervisor`) makes the
  Parquet files and decides ``network_duplicate``, off the proxy's event loop
  and its GIL;
* lifecycle hooks are plain ``def`` because mitmproxy calls them synchronously
  when it reloads a script, where an ``async def done`` would fail;
* when the spool cannot be written the operator is told on stderr at once, and
  ``capture_on_write_failure`` decides: ``pass`` (default) keeps traffic flowing
  unrecorded, ``stop`` answers ``503 RETRY_LATER`` (the aggregator retries
  later) until a write succeeds again, so nothing is answered unrecorded.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from shadow.capture_record import Headers
from shadow.capture_settings import OPTION_OF, CaptureSettings, resolve_settings
from shadow.compactor_supervisor import CompactorSpec, CompactorSupervisor
from shadow.redact import Redactor
from shadow.spool import SPOOL_DIRNAME, SpoolLockedError, SpoolWriter
from shadow.spool_record import (
    Identifier,
    SpoolRecord,
    aggregator_of,
    client_addr,
    encode_spool_record,
)
from wallet_core.config import load_config
from wallet_core.errors import ConfigError

__all__ = ["CaptureAddon", "addons", "aggregator_of", "client_addr"]

_CAPTURED = "rgs_shadow_captured"
_REFUSED = "rgs_shadow_refused"
_REPORT_EVERY_S = 10.0
_RETRY_LATER_BODY = json.dumps(
    {"status": "ERROR", "code": "RETRY_LATER", "message": "capture cannot write; retry later"}
).encode()


def _loud(message: str) -> None:
    """Errors go straight to stderr: mitmproxy's own log goes to stdout and -q hides it."""
    print(f"rgs-shadow capture: {message}", file=sys.stderr, flush=True)


class CaptureAddon:
    """Options, lifecycle and the two capture hooks (see the module docstring)."""

    def __init__(self) -> None:
        self.settings: CaptureSettings | None = None
        self.capture_dir: Path | None = None
        self.writer: SpoolWriter | None = None
        self.supervisor: CompactorSupervisor | None = None
        self.redactor = Redactor(b"")
        self.identify = Identifier({})
        self.failing = False
        self.failed_records = 0
        self._last_report = 0.0

    # -- lifecycle -------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        defaults = CaptureSettings()
        add = loader.add_option
        add("capture_dir", str, "", "Capture directory (Parquet dataset root). Required.")
        add("capture_config", str, "", "rgs-shadow TOML config: aggregators and [capture].")
        add("capture_body_cap", int, defaults.body_cap_bytes, "Bytes of each body kept.")
        add("capture_segment_seconds", int, defaults.segment_seconds, "Spool segment max age.")
        add("capture_segment_bytes", int, defaults.segment_bytes, "Spool segment max size.")
        add(
            "capture_on_write_failure",
            str,
            defaults.on_write_failure,
            "When the spool cannot be written: pass traffic unrecorded, or stop it (503).",
            choices=["pass", "stop"],
        )
        add("capture_redact_headers", Sequence[str], [], "Headers replaced by a keyed hash.")
        add("capture_redact_body_fields", Sequence[str], [], "JSON body fields to redact.")
        add("capture_redact_key_env", str, defaults.redact_key_env, "Env var of the hash key.")
        add("capture_proxy_id", str, "", "Name of this proxy (default: the host name).")
        add(
            "capture_duplicate_window_hours",
            int,
            defaults.duplicate_window_hours,
            "How long a transaction_id is remembered for network_duplicate.",
        )
        add("capture_merge_seconds", int, defaults.merge_interval_seconds, "Merge interval.")
        add("capture_fsync_ms", int, defaults.fsync_interval_ms, "Spool fsync interval, 0: off.")

    def configure(self, updated: set[str]) -> None:
        if not updated & ({"capture_dir", "capture_config"} | set(OPTION_OF.values())):
            return
        if not ctx.options.capture_dir:
            # Not an OptionsError: mitmproxy re-runs configure with the previous
            # values after a rejected change, and those may lack the directory
            # too.  running() reports it, which makes mitmdump exit at start-up.
            self._stop()
            return
        try:
            config = load_config(ctx.options.capture_config or None)
            explicit = {
                name: getattr(ctx.options, name)
                for name in OPTION_OF.values()
                if getattr(ctx.options, name) != ctx.options.default(name)
            }
            settings = resolve_settings(config.sections.get("capture", {}), explicit)
            redactor = Redactor(
                settings.redact_key(), settings.redact_headers, settings.redact_body_fields
            )
        except ConfigError as exc:
            raise _options_error(str(exc)) from None
        self._stop()
        self.settings, self.redactor = settings, redactor
        self.identify = Identifier({n: agg.dialect for n, agg in config.aggregators.items()})
        self._start(Path(ctx.options.capture_dir))

    def running(self) -> None:
        # Startup is over: move every object alive now (mitmproxy's and this package's)
        # out of the collector's sight.  They live as long as the proxy anyway, and
        # otherwise each full collection walks them again (when this process still
        # imported pyarrow, that alone cost a do-nothing addon several % of throughput).
        gc.freeze()
        if self.writer is None:
            logging.getLogger(__name__).error(
                "capture_dir: required (--set capture_dir=DIR); nothing is being captured"
            )

    def done(self) -> None:
        self._stop()

    def _start(self, capture_dir: Path) -> None:
        """Lock the spool, start the compactor process (it recovers what a previous run left)."""
        settings = self.settings
        assert settings is not None
        writer = SpoolWriter(
            capture_dir / SPOOL_DIRNAME,
            settings.proxy_id,
            settings.segment_bytes,
            settings.segment_seconds,
        )
        spec = CompactorSpec(
            capture_dir=str(capture_dir),
            proxy_id=settings.proxy_id,
            duplicate_window_hours=settings.duplicate_window_hours,
            merge_seconds=settings.merge_interval_seconds,
            merge_grace_seconds=max(600.0, 2.0 * settings.segment_seconds),
            dialects={name: d.name for name, d in self.identify.dialects.items()},
        )
        supervisor = CompactorSupervisor(
            writer,
            spec,
            report_error=lambda m: _loud(f"ERROR: {m}"),
            fsync_seconds=settings.fsync_interval_ms / 1000,
        )
        try:
            writer.acquire()
            supervisor.start()
        except SpoolLockedError as exc:
            raise _options_error(str(exc)) from None
        except OSError as exc:
            writer.release()
            raise _options_error(f"capture_dir: cannot use {capture_dir}: {exc}") from None
        self.capture_dir, self.writer, self.supervisor = capture_dir, writer, supervisor

    def _stop(self) -> None:
        """Drain: publish the open segment, let the compactor process compact every segment."""
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self.writer is not None:
            self.writer.release()
            self.writer = None

    # -- hooks -----------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        """With ``on_write_failure=stop`` and a failing spool, refuse before the wallet sees it."""
        if self.failing and self.settings is not None and self.settings.on_write_failure == "stop":
            flow.metadata[_REFUSED] = True
            flow.response = http.Response.make(
                503,
                _RETRY_LATER_BODY,
                {"content-type": "application/json", "retry-after": "1"},
            )

    def response(self, flow: http.HTTPFlow) -> None:
        self._capture(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._capture(flow)

    def _capture(self, flow: http.HTTPFlow) -> None:
        """Append the flow's record; every failure is reported, none is raised."""
        writer = self.writer
        if writer is None or flow.metadata.get(_CAPTURED):
            return
        flow.metadata[_CAPTURED] = True
        try:
            payload = encode_spool_record(self.record_of(flow))
        except Exception as exc:  # noqa: BLE001 - never raise into mitmproxy
            _loud(f"ERROR: could not build the capture record of {flow.id}: {exc!r}")
            return
        try:
            writer.append(payload)
        except OSError as exc:
            self._write_failed(exc, flow)
            return
        if self.failing:
            self.failing = False
            _loud(f"capture spool writable again after {self.failed_records} lost record(s)")
            self.failed_records = 0

    def _write_failed(self, exc: OSError, flow: http.HTTPFlow) -> None:
        self.failed_records += 1
        stop = self.settings is not None and self.settings.on_write_failure == "stop"
        now = time.monotonic()
        if not self.failing or now - self._last_report >= _REPORT_EVERY_S:
            consequence = (
                "answering 503 RETRY_LATER until it can write (capture_on_write_failure=stop)"
                if stop
                else "traffic keeps flowing UNRECORDED (capture_on_write_failure=pass)"
            )
            _loud(
                f"ERROR: cannot write the capture spool in {self.capture_dir}: {exc}; "
                f"{self.failed_records} record(s) lost so far; {consequence}"
            )
            self._last_report = now
        self.failing = True
        if stop and flow.response is not None and not flow.metadata.get(_REFUSED):
            flow.response = http.Response.make(
                503, _RETRY_LATER_BODY, {"content-type": "application/json", "retry-after": "1"}
            )

    # -- the record ------------------------------------------------------------------

    def record_of(self, flow: http.HTTPFlow) -> SpoolRecord:
        """Copy what the contract's columns need out of a finished flow, parsing nothing."""
        settings = self.settings
        assert settings is not None
        cap, redactor = settings.body_cap_bytes, self.redactor
        req = flow.request
        started = float(req.timestamp_start)  # fails here, reported, not in the compactor
        path = req.path
        raw_request = req.raw_content
        resp = flow.response
        error = flow.error
        if flow.metadata.get(_REFUSED):
            message: str | None = "capture spool not writable: answered 503 without forwarding"
        else:
            message = error.msg if error is not None else None
        if resp is not None:
            ended = resp.timestamp_end or resp.timestamp_start or time.time()
            raw_response = resp.raw_content
        else:
            ended = error.timestamp if error is not None else time.time()
            raw_response = None
        request_length = len(raw_request) if raw_request is not None else None
        txid = event = None
        identified = bool(redactor.body_fields) or (request_length or 0) > cap
        if identified:  # the compactor will only see the body cut or redacted
            txid, event = self.identify(aggregator_of(path), raw_request)
            txid = redactor.redact_value("transaction_id", txid)
        return SpoolRecord(
            capture_id=flow.id,
            started=started,
            peername=flow.client_conn.peername,
            method=req.method,
            path=path,
            request_headers=self._headers(req.headers),
            request_body=_cap(redactor.redact_body(raw_request), cap),
            response_status=resp.status_code if resp is not None else None,
            response_headers=self._headers(resp.headers) if resp is not None else None,
            response_body=_cap(redactor.redact_body(raw_response), cap),
            ended=ended,
            error=message,
            identified=identified,
            transaction_id=txid,
            event=event,
            request_body_length=request_length,
            response_body_length=len(raw_response) if raw_response is not None else None,
            proxy_id=settings.proxy_id,
        )

    def _headers(self, headers: http.Headers) -> Headers:
        """mitmproxy's own byte pairs (the compactor decodes them), unless some are redacted."""
        if self.redactor.headers:
            return self.redactor.redact_headers(_pairs(headers))
        return headers.fields


def _options_error(message: str) -> Exception:
    return exceptions.OptionsError(message)  # type: ignore[no-untyped-call]


def _pairs(headers: http.Headers) -> tuple[tuple[str, str], ...]:
    """Header pairs as text; undecodable bytes become U+FFFD (Arrow strings must be UTF-8)."""
    return tuple(
        (name.decode("utf-8", "replace"), value.decode("utf-8", "replace"))
        for name, value in headers.fields
    )


def _cap(body: bytes | None, cap: int) -> bytes | None:
    if body is None:
        return None
    return body if len(body) <= cap else body[:cap]


addons = [CaptureAddon()]
