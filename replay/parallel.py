"""``--jobs N``: one in-process replay split over N processes by player, merged in order.

The wallet core decides one callback at a time in one Python thread, so a replay
uses one core however many the machine has.  Players are independent (a player's
balance, sessions and rounds are his own), which is what ``--shard K/N`` already
relies on: here the N shards run at once, each in its own process with its own
scratch ledger, and their decision files, each already in captured order, are
merged into one.  The merged file is the one an unsplit run writes, row for row,
``seq`` included: the merge orders rows as the reader does (captured time, then
capture id) and numbers them again.

Only the plain replay is split: fault injection draws per stream, ``--shard``
already splits, ``--db`` names one ledger, and ``--target`` has its own
concurrency; :func:`check_jobs` says so in one line.
"""

from __future__ import annotations

import base64
import os
import pickle
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wallet_core.errors import InputError

if TYPE_CHECKING:
    from .run import ReplayOptions, ReplaySummary

__all__ = [
    "AUTO_MAX_JOBS",
    "AUTO_MIN_ROWS",
    "auto_jobs",
    "check_jobs",
    "merge_in_order",
    "run_parallel",
    "single_threaded_arrow",
    "usable_cores",
    "work",
    "worker_env",
    "worker_main",
]

#: ``--jobs auto`` splits captures of at least this many rows, into at most this many
#: processes (each holds about 200 MB at 1,000,000 callbacks / 2; see docs/replay.md).
AUTO_MIN_ROWS = 100_000
AUTO_MAX_JOBS = 4
#: Rows a worker counts before it tells the parent (the progress bar's granularity).
_REPORT_EVERY = 2_000
#: Rows read from each shard's file at a time while merging (bounded memory).
_MERGE_BATCH = 16_384
#: The directory that holds the ``replay`` package, for the workers' imports.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_WORKER_MAIN = "from replay.parallel import worker_main; worker_main()"
#: The order of the reader: captured time, then capture id.
_ORDER = [("captured_at", "ascending"), ("capture_id", "ascending")]


def _clash(options: ReplayOptions) -> str | None:
    """The option that keeps this replay in one process, if any."""
    if options.target is not None:
        return "--target"
    if options.db_url is not None:
        return "--db"
    if options.shard is not None:
        return "--shard"
    return "fault injection" if options.faults.active else None


def check_jobs(options: ReplayOptions) -> None:
    """Refuse, in one line, the combinations a split replay cannot honour."""
    if options.jobs < 1:
        raise InputError(f"--jobs: {options.jobs} is not a number of processes (1 or more)")
    if options.jobs == 1:
        return
    clash = _clash(options)
    if clash is not None:
        raise InputError(f"--jobs {options.jobs} cannot be combined with {clash}: use --jobs 1")


def auto_jobs(options: ReplayOptions, rows: int) -> int:
    """``--jobs auto``: one process per usable core (at most :data:`AUTO_MAX_JOBS`).

    One process when the replay cannot be split or the capture (``rows``, as stored)
    is too small for the split to pay: each worker starts an interpreter and reads
    the whole capture to pick its players.
    """
    if _clash(options) is not None or rows < AUTO_MIN_ROWS:
        return 1
    return max(1, min(usable_cores(), AUTO_MAX_JOBS))


def usable_cores() -> int:
    """Cores this process may run on (its affinity, where the system says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_parallel(
    options: ReplayOptions, progress: Callable[[int], None] | None = None
) -> ReplaySummary:
    """Replay ``options`` in ``options.jobs`` processes; one merged decision file."""
    from .run import ReplaySummary

    started = time.perf_counter()
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts_dir = out.with_name(f".{out.name}.jobs-{os.getpid()}")
    parts_dir.mkdir()
    try:
        parts = [parts_dir / f"shard-{k}.parquet" for k in range(1, options.jobs + 1)]
        summaries = _run_workers(options, parts, progress)
        merge_in_order(parts, out)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    total = ReplaySummary(out=str(out), processes=options.jobs)
    for part in summaries:
        total.callbacks += part.callbacks
        total.outcomes.update(part.outcomes)
        total.codes.update(part.codes)
        total.injected.update(part.injected)
        total.dropped += part.dropped
        total.openings += part.openings
        total.unknown_openings += part.unknown_openings
    total.elapsed_s = time.perf_counter() - started
    return total


def _run_workers(
    options: ReplayOptions, parts: list[Path], progress: Callable[[int], None] | None
) -> list[ReplaySummary]:
    """Start one process per shard, relay their progress, and collect their summaries.

    A plain ``python -c`` child rather than :mod:`multiprocessing`: spawning would
    import the caller's ``__main__`` again (a script without a main guard would
    replay itself), and forking a process that holds Arrow's threads is unsafe.
    """
    jobs = len(parts)
    env = worker_env(os.environ)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for k, part in enumerate(parts, start=1):
            worker = subprocess.Popen(
                [sys.executable, "-c", _WORKER_MAIN],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            workers.append(worker)
            assert worker.stdin is not None
            worker.stdin.write(pickle.dumps(replace(options, out=part, shard=(k, jobs), jobs=1)))
            worker.stdin.close()
        results = _collect(workers, progress)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    for kind, value in results:
        if kind == "error":
            raise value
    return [value for _, value in results]


def worker_env(parent: Mapping[str, str]) -> dict[str, str]:
    """The workers' environment: the parent's, the package importable, a lean Arrow heap.

    Arrow's allocator (mimalloc) hands freed pages back to the system only after a
    delay, and only from a thread that allocates again: the pages its reader threads
    freed stayed with the process, about 40 MB per worker at 1,000,000 callbacks
    (peak PSS of ``--jobs 2``: 516 MB, 439 MB with the delay at 0, same speed).  The
    option is read when the library loads, hence the environment; a value the user
    set is kept.
    """
    env = dict(parent)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.setdefault("MIMALLOC_PURGE_DELAY", "0")
    return env


def _collect(
    workers: list[subprocess.Popen[bytes]], progress: Callable[[int], None] | None
) -> list[tuple[str, Any]]:
    """Read every worker's lines: ``+N`` (progress) until its one ``=`` line (its result)."""
    results: dict[int, tuple[str, Any]] = {}
    with selectors.DefaultSelector() as selector:
        for k, worker in enumerate(workers):
            assert worker.stdout is not None
            selector.register(worker.stdout, selectors.EVENT_READ, k)
        while len(results) < len(workers):
            for key, _ in selector.select():
                k = key.data
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if line.startswith(b"+") and line.endswith(b"\n"):
                    if progress is not None:
                        progress(int(line[1:]))
                    continue
                if line.startswith(b"=") and line.endswith(b"\n"):
                    results[k] = pickle.loads(base64.b64decode(line[1:]))
                elif not line.endswith(b"\n"):  # cut short: killed, out of memory
                    results[k] = ("error", RuntimeError(f"replay worker {k + 1} stopped early"))
                else:
                    continue
                selector.unregister(key.fileobj)
    return [results[k] for k in range(len(workers))]


def worker_main() -> None:
    """A worker process: options (pickled) on standard input; progress and result out."""
    out = os.fdopen(os.dup(1), "wb")  # the channel to the parent; stray prints go to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    single_threaded_arrow()
    work(sys.stdin.buffer.read(), out)


def single_threaded_arrow() -> None:
    """One Arrow thread per worker: the workers already keep every core busy.

    Arrow's own pools (a thread per core, eight for I/O) only contend with the other
    workers there, and each thread keeps a heap of its own: at 1,000,000 callbacks
    ``--jobs 2`` peaked 25 MB lower in PSS (66 MB in the RSS sum), at the same speed.
    """
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def work(options_pickle: bytes, out: BinaryIO) -> None:
    """Replay the pickled options, writing ``+N`` progress lines and one ``=`` result line."""
    from . import run

    pending = 0

    def advance(n: int) -> None:
        nonlocal pending
        pending += n
        if pending >= _REPORT_EVERY:
            out.write(b"+%d\n" % pending)
            out.flush()
            pending = 0

    result: tuple[str, Any]
    try:
        summary = run.run_replay(pickle.loads(options_pickle), advance)
        if pending:
            out.write(b"+%d\n" % pending)
        result = ("ok", summary)
    except BaseException as exc:  # the parent raises it there, as one line
        result = ("error", exc)
    try:
        payload = pickle.dumps(result)
        pickle.loads(payload)  # an exception class that cannot be rebuilt must not fail there
    except Exception:  # an exception that does not pickle: its message still goes
        failure = result[1]
        message = f"{type(failure).__name__}: {failure}"
        payload = pickle.dumps(("error", RuntimeError(message)))
    out.write(b"=" + base64.b64encode(payload) + b"\n")
    out.flush()


def merge_in_order(parts: list[Path], out: Path) -> int:
    """Merge decision files, each in captured order, into ``out`` in that order.

    Streams: a batch from each file at a time, so memory stays bounded by the batch
    size whatever the files hold.  Rows up to the smallest "last row read" of the
    files still open are final (every later row of every file comes after it), so
    they are sorted together, numbered (``seq``) and written; the rest waits for
    the next batches.  Written under a hidden name and renamed into place.
    """
    files = [pq.ParquetFile(p) for p in parts]
    schema = files[0].schema_arrow
    seq_index = schema.get_field_index("seq")
    tmp = out.with_name(f".{out.name}.tmp")
    sources = [_batches(f) for f in files]
    held: list[pa.Table | None] = [next(s, None) for s in sources]
    written = 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        while any(t is not None for t in held):
            cut = min(_last_key(t) for t in held if t is not None)
            ready: list[pa.Table] = []
            for i, table in enumerate(held):
                if table is None:
                    continue
                n = _count_up_to(table, cut)
                ready.append(table.slice(0, n))
                rest = table.slice(n)
                while rest.num_rows == 0:  # refill a drained source before the next cut
                    following = next(sources[i], None)
                    if following is None:
                        break
                    rest = following
                held[i] = rest if rest.num_rows else None
            chunk = pa.concat_tables(ready)
            chunk = chunk.take(pc.sort_indices(chunk, sort_keys=_ORDER))
            seq = pa.array(range(written, written + chunk.num_rows), pa.int64())
            writer.write_table(chunk.set_column(seq_index, schema.field(seq_index), seq))
            written += chunk.num_rows
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, out)
    return written


def _batches(file: pq.ParquetFile) -> Iterator[pa.Table]:
    for batch in file.iter_batches(batch_size=_MERGE_BATCH):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def _last_key(table: pa.Table) -> tuple[int, str]:
    last = table.num_rows - 1
    at = table.column("captured_at").cast(pa.int64())[last].as_py()
    return at, table.column("capture_id")[last].as_py()


def _count_up_to(table: pa.Table, cut: tuple[int, str]) -> int:
    """How many leading rows of a sorted ``table`` are at or before ``cut``."""
    at = table.column("captured_at").cast(pa.int64())
    before = pc.less(at, cut[0])
    same = pc.and_(pc.equal(at, cut[0]), pc.less_equal(table.column("capture_id"), cut[1]))
    return int(pc.sum(pc.or_(before, same)).as_py() or 0)
