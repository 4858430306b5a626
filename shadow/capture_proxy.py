"""``python -m shadow.capture_proxy [mitmdump options]``: mitmdump with the capture addon built in.

Why not ``mitmdump -s shadow/addon.py`` (which keeps working): mitmproxy walks
every event (about eight per request) through its script loader, the script
object and the script module before it reaches the addon.  On a proxy that
spends half its CPU dispatching events, that walk measured 1-3 % of the
throughput (``bench/capture.py``); registered directly, the same addon costs
one entry in the addon chain.  Everything else is mitmdump's own start-up
(options, ``--set``, signals), run the way ``mitmdump`` runs it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from mitmproxy import options
from mitmproxy.tools import cmdline, main
from mitmproxy.tools.dump import DumpMaster

from .addon import CaptureAddon

__all__ = ["CaptureMaster", "run"]


class CaptureMaster(DumpMaster):
    """mitmdump's master with the capture addon last in the chain: it records what was answered."""

    def __init__(self, opts: options.Options, **kwargs: Any) -> None:
        super().__init__(opts, **kwargs)
        self.addons.add(CaptureAddon())  # type: ignore[no-untyped-call]


def _filter_options(args: Any) -> dict[str, Any]:
    """What mitmdump does with a filter expression on its command line (``main.mitmdump``)."""
    if args.filter_args:
        expression = " ".join(args.filter_args)
        return {
            "save_stream_filter": expression,
            "readfile_filter": expression,
            "dumper_filter": expression,
        }
    return {}


def run(arguments: Sequence[str] | None = None) -> None:
    """Run until SIGINT/SIGTERM, exactly like ``mitmdump`` with the same arguments."""
    args = sys.argv[1:] if arguments is None else list(arguments)
    main.run(CaptureMaster, cmdline.mitmdump, args, _filter_options)


if __name__ == "__main__":
    run()
