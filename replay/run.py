"""One replay run: bootstrap, drive every captured callback, write the decisions.

The in-process driver hands each captured request to ``WalletCore.handle`` (the
code path ``serve`` uses) with the clock set to the captured time, in shadow
mode, on a scratch SQLite ledger unless ``--db`` names one.  The HTTP driver
(:mod:`.http_driver`) sends the same rows to a running wallet instead.
"""

from __future__ import annotations

import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wallet_core import Mode, OperatorApi, WalletConfig, WalletCore
from wallet_core.dialects import Dialect, GenericDialect
from wallet_core.snapshot import read_snapshot
from wallet_core.store import Store, open_store

from .bootstrap import opening_balances
from .decisions import DecisionWriter, decision_row
from .faults import FaultPlan, inject
from .parallel import check_jobs, run_parallel
from .reader import Captured, CaptureReader

__all__ = ["ReplayOptions", "ReplaySummary", "run_replay"]

_FALLBACK = GenericDialect()
#: Rows the replay store caches per table (see :class:`wallet_core.store.buffer.WriteBuffer`).
#: Small on purpose: at 1,000,000 callbacks 20,000 ran about 8 % faster than 100,000 and
#: peaked 70 MB lower (the rows a win or settle needs are recent; dropping half of a
#: large cache costs more than the few SQLite reads a small one adds).
_CACHE_ROWS = 20_000
_CACHE_ROWS_MIN = 5_000


@dataclass(frozen=True)
class ReplayOptions:
    capture_dir: Path
    out: Path
    config: WalletConfig
    db_url: str | None = None
    snapshot: Path | None = None
    since_us: int | None = None
    until_us: int | None = None
    aggregator: str | None = None
    target: str | None = None
    speed: float | None = None  # None: as fast as possible; 1.0: captured pace; N: N times faster
    shard: tuple[int, int] | None = None  # (K, N), K in 1..N
    faults: FaultPlan = field(default_factory=FaultPlan)
    concurrency: int = 32
    jobs: int = 1  # processes for the in-process driver (see :mod:`.parallel`)


@dataclass
class ReplaySummary:
    callbacks: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    dropped: int = 0
    openings: int = 0
    unknown_openings: int = 0
    elapsed_s: float = 0.0
    out: str = ""
    processes: int = 1  # ``--jobs``: the workers the replay was split over

    @property
    def rate(self) -> float:
        return self.callbacks / self.elapsed_s if self.elapsed_s else 0.0

    def count(self, outcome: str, code: str, injected: str | None) -> None:
        self.callbacks += 1
        self.outcomes[outcome] += 1
        self.codes[code] += 1
        if injected:
            self.injected[injected] += 1


class Router:
    """Who a captured row belongs to: the key for ordering, sharding and reordering."""

    def __init__(self, config: WalletConfig) -> None:
        self.config = config

    def dialect(self, aggregator: str) -> Dialect:
        """The aggregator's dialect; the generic one for an aggregator not configured."""
        agg = self.config.aggregators.get(aggregator)
        return agg.dialect if agg else _FALLBACK

    def account(self, row: Captured) -> tuple[str | None, str | None]:
        return self.dialect(row.aggregator).routing_key(row.body)

    def player(self, row: Captured) -> str:
        return self.key(row.capture_id, row.aggregator, row.body)

    def key(self, capture_id: str, aggregator: str, body: bytes) -> str:
        """The player's key, or the callback's own when its body names no player."""
        player, _ = self.dialect(aggregator).routing_key(body)
        return f"player:{player}" if player is not None else f"capture:{capture_id}"


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    k, n = shard
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % n == k - 1


def run_replay(
    options: ReplayOptions, progress: Callable[[int], None] | None = None
) -> ReplaySummary:
    """Replay ``options.capture_dir`` into ``options.out``; see the module docstring."""
    check_jobs(options)
    if options.jobs > 1:
        return run_parallel(options, progress)
    started = time.perf_counter()
    summary = ReplaySummary(out=str(options.out))
    router = Router(options.config)
    reader = CaptureReader(
        options.capture_dir,
        since_us=options.since_us,
        until_us=options.until_us,
        aggregator=options.aggregator,
    )
    writer = DecisionWriter(
        options.out,
        metadata={
            "capture_dir": str(Path(options.capture_dir).resolve()),
            "mode": "live" if options.target else "shadow",
        },
    )
    try:
        rows = _selected(reader, options, router)
        dropped: list[str] = []
        stream: Iterator[tuple[Captured, str | None]]
        if options.faults.active:
            stream = inject(rows, options.faults, router.player, dropped)
        else:  # the common case, one generator fewer per row
            stream = ((row, None) for row in rows)
        if options.target is not None:
            from .http_driver import drive_http

            drive_http(options, stream, router, writer, summary, progress)
        else:
            _drive_in_process(options, reader, stream, router, writer, summary, progress)
        summary.dropped = len(dropped)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _selected(
    reader: CaptureReader, options: ReplayOptions, router: Router, *, light: bool = False
) -> Iterator[Captured]:
    """The reader's rows, only this shard's when ``--shard`` (or ``--jobs``) splits the run.

    The shard is decided on the id, aggregator and body alone, before the rest of a
    row is built: with N shards, N - 1 rows in N are only looked at.
    """
    shard = options.shard
    if shard is None:  # routing parses the body: not for nothing
        return reader.rows(light=light)

    def keep(capture_id: str, aggregator: str, body: bytes) -> bool:
        return in_shard(router.key(capture_id, aggregator, body), shard)

    return reader.rows(light=light, keep=keep)


def _drive_in_process(
    options: ReplayOptions,
    reader: CaptureReader,
    stream: Iterator[tuple[Captured, str | None]],
    router: Router,
    writer: DecisionWriter,
    summary: ReplaySummary,
    progress: Callable[[int], None] | None,
) -> None:
    config = options.config
    with tempfile.TemporaryDirectory(prefix="rgs-shadow-replay-") as scratch:
        url = options.db_url or f"sqlite:///{Path(scratch) / 'replay.db'}"
        store = open_store(url, durability="replay", cache_rows=_cache_rows(options))
        try:
            _open_accounts(store, options, reader, router, summary)
            core = WalletCore(store, config, mode=Mode.SHADOW)
            handle, add, count = core.handle, writer.add, summary.count
            currencies, mode = config.currencies, Mode.SHADOW.value
            for seq, (row, marker) in enumerate(stream):
                decision = handle(
                    row.aggregator, row.headers, row.body, row.captured_at_us
                ).decision
                dialect = router.dialect(row.aggregator)
                currency = decision.currency or router.account(row)[1]
                add(
                    decision_row(
                        seq,
                        row,
                        decision,
                        dialect,
                        currencies,
                        currency,
                        mode,
                        marker,
                        decision.ref_transaction_id,
                    )
                )
                count(decision.outcome.value, decision.code.value, marker)
                if progress is not None:
                    progress(1)
        finally:
            store.close()


def _cache_rows(options: ReplayOptions) -> int:
    """The replay store's cache, per table: a shard's share (it sees 1/N of the players).

    With ``--jobs N`` the N workers' caches then hold together what one process's does.
    """
    shares = options.shard[1] if options.shard is not None else 1
    return max(_CACHE_ROWS // shares, _CACHE_ROWS_MIN)


def _open_accounts(
    store: Store,
    options: ReplayOptions,
    reader: CaptureReader,
    router: Router,
    summary: ReplaySummary,
) -> None:
    """Opening balances: from ``--snapshot`` when given, else from the live answers."""
    operator = OperatorApi(store, options.config)
    if options.snapshot is not None:
        rows = read_snapshot(options.snapshot, options.config.currencies)
        wanted = [r for r in rows if in_shard(f"player:{r[0]}", options.shard)]
        summary.openings = operator.import_snapshot(wanted, options.since_us or 0)
        return
    found = opening_balances(_selected(reader, options, router, light=True), options.config)
    for (player, currency), minor in sorted(found.balances.items()):
        at = found.first_seen_us[(player, currency)]
        operator.adjust(f"bootstrap:{player}:{currency}", player, currency, minor, at)
    summary.openings = len(found.balances)
    summary.unknown_openings = len(found.unknown)
