"""``python -m shadow.compactor_process SPEC``: the compactor, in the process the proxy starts.

Why a process, see :mod:`shadow.compactor_supervisor`.  It lives as long as
its stdin: the proxy closes it after publishing its last segment, and the
kernel closes it when the proxy dies, even by SIGKILL.  Then it compacts what
is left and exits.  It ignores SIGINT and SIGTERM: a Ctrl-C reaches the whole
process group, and the proxy must publish its last segment before this drains.
Messages go to stderr, which it shares with the proxy.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from .compactor import Compactor
from .compactor_supervisor import CompactorSpec
from .duplicates import DuplicateTracker
from .spool_record import Identifier

__all__ = ["main"]


def _say(message: str) -> None:
    print(f"rgs-shadow capture: {message}", file=sys.stderr, flush=True)


def _until_eof(stop: threading.Event) -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = CompactorSpec.from_json(args[0])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop = threading.Event()
    threading.Thread(target=_until_eof, args=(stop,), daemon=True).start()
    compactor = Compactor(
        Path(spec.capture_dir),
        spec.proxy_id,
        report_error=lambda m: _say(f"ERROR: {m}"),
        report_info=_say,
        tracker=DuplicateTracker(spec.duplicate_window_hours),
        identify=Identifier.by_name(spec.dialects),
        merge_grace_seconds=spec.merge_grace_seconds,
    )
    # Nothing is compacted before recovery worked: the seen ids must be loaded first.
    while True:
        try:
            compactor.recover()
            break
        except Exception as exc:  # noqa: BLE001 - retried; the segments stay meanwhile
            _say(f"ERROR: recovering the capture spool failed ({exc}); retrying")
            if stop.wait(5.0):
                return 1
    compactor.run(stop, spec.poll_seconds, spec.merge_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
