"""The reference CSV export read in one compiled pass, on two threads.

Ten million export rows are about a gigabyte of text.  The careful loader
(:mod:`compare.settlement`) has the CSV reader turn it into string columns,
then checks and converts them column by column: about 3.5 s of CPU at ten
million rows.  Most exports are the reference layout written by a program, and
for those one pass that splits, checks and converts each row as it goes
(:func:`compare.csvkernels.parse`) does the same work in about a third of that.

It only ever answers for files it fully understands: the default column map,
a plain header, and rows in the strict form :mod:`compare.csvkernels`
describes.  Whatever else it meets, it returns None, having written nothing
anyone sees, and the careful loader reads the file: it accepts what this pass
does not, and names the bad cell when there is one.  The table it makes is the
one the careful loader makes of the same file.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from wallet_core.money import CurrencyTable

from . import csvkernels as K
from .columnmap import EVENTS, ROW_FIELDS, STATUSES
from .rows import DICTIONARY_TYPE

__all__ = ["Parsed", "read_reference_csv"]

#: Text fields, in the order of their roles (:data:`compare.csvkernels.ROLES` 1-4).
TEXTS = ("transaction_id", "round_id", "player_id", "ref_transaction_id")
#: The default column map names every reference field, and the careful loader refuses a
#: file whose header lacks one (naming the column).
REQUIRED = ROW_FIELDS
#: Rows of text parsed by one call: each run's text columns are one chunk (int32 offsets).
RUN_BYTES = 1 << 29

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Parsed:
    """The converted columns of an export."""

    rows: int
    texts: dict[str, pa.ChunkedArray]  # the fields of TEXTS
    event: pa.ChunkedArray
    status: pa.ChunkedArray
    currency: pa.ChunkedArray
    amount: pa.ChunkedArray
    settled: pa.ChunkedArray


def read_reference_csv(
    path: Path, names: list[str], currencies: CurrencyTable, threads: int = 2
) -> Parsed | None:
    """The export at ``path`` (header ``names``), or None when it is not in the strict form."""
    if len(set(names)) != len(names) or any(field not in names for field in REQUIRED):
        return None
    roles = np.array([K.ROLES.get(name, 0) for name in names], np.int64)
    with path.open("rb") as handle:
        try:
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file
            return None
    # The file's pages as they are in the page cache; unmapped when the last view goes.
    try:
        return _parse(np.frombuffer(mapped, np.uint8), names, roles, currencies, threads)
    except MemoryError:
        # The room reserved for a run's rows (pages never touched) can still exceed what
        # a machine that overcommits no memory allows: the careful loader reads it.
        return None


def _parse(
    buf: np.ndarray, names: list[str], roles: np.ndarray, currencies: CurrencyTable, threads: int
) -> Parsed | None:
    header_end = int(np.argmax(buf[: 1 << 20] == 10)) if len(buf) else 0
    if not len(buf) or buf[header_end] != 10 or buf[-1] != 10:
        return None  # no line break after the header, or none at the end of the file
    runs = _runs(buf, header_end + 1)
    codes = currencies.codes()
    spelled = _spellings([list(EVENTS), list(STATUSES), codes])
    exps = np.array([currencies.exponent(c) for c in codes], np.int64)
    # No row is shorter than its separators and the shortest text of each field that
    # must not be empty: arrays of (run bytes // that) rows hold every row of a run.
    # Rows are not counted first (a pass over the file); the room left unused is pages
    # never touched, which cost nothing.
    shortest = len(names) + 1 + min(len(c) for c in codes)
    shortest += min(map(len, EVENTS)) + min(map(len, STATUSES))  # + id and amount, >= 1

    def parse(i: int) -> tuple[int, _Run]:
        lo, hi = runs[i]
        room = (hi - lo) // shortest + 1
        offsets = np.empty((len(TEXTS), room + 1), np.int32)  # not zeros: not touched
        offsets[:, 0] = 0
        run = _Run(
            tuple(np.empty(hi - lo, np.uint8) for _ in TEXTS),
            offsets,
            np.empty((len(TEXTS), room), np.uint8),
            np.empty((3, room), np.int32),
            np.empty((2, room), np.int64),
            np.empty(room, np.uint8),
        )
        refused, rows = K.parse(
            buf, lo, hi, roles, room, run.texts, run.offsets, run.valid, spelled[0],
            spelled[1], exps, run.codes[0], run.codes[1], run.codes[2], run.numbers[0],
            run.numbers[1], run.timed,
        )  # fmt: skip
        return (-1 if refused < 0 else int(refused)), run.cut(int(rows))

    parsed = _map(parse, list(range(len(runs))), threads)
    if any(refused >= 0 for refused, _ in parsed):
        return None
    done = [run for _, run in parsed]
    n = sum(run.rows for run in done)
    if n == 0:
        return None
    texts = {
        name: pa.chunked_array([_strings(*run.text(k)) for run in done], pa.string())
        for k, name in enumerate(TEXTS)
    }

    def chunked(make: Callable[[_Run], pa.Array]) -> pa.ChunkedArray:
        return pa.chunked_array([make(run) for run in done])

    return Parsed(
        n,
        texts,
        chunked(lambda run: _dictionary(run.codes[0], EVENTS)),
        chunked(lambda run: _dictionary(run.codes[1], STATUSES)),
        chunked(lambda run: _dictionary(run.codes[2], codes)),
        chunked(lambda run: pa.array(run.numbers[0])),
        chunked(lambda run: _times(run.numbers[1], run.timed)),
    )


@dataclass(frozen=True, slots=True)
class _Run:
    """What :func:`compare.csvkernels.parse` writes for a run of rows (room for more)."""

    texts: tuple[np.ndarray, ...]
    offsets: np.ndarray  # per text field, rows + 1
    valid: np.ndarray  # per text field
    codes: np.ndarray  # event, status, currency
    numbers: np.ndarray  # amount, settled_at
    timed: np.ndarray  # settled_at present

    @property
    def rows(self) -> int:
        return len(self.timed)

    def cut(self, rows: int) -> _Run:
        """The run's arrays cut to the rows it has (views)."""
        return _Run(
            self.texts,
            self.offsets[:, : rows + 1],
            self.valid[:, :rows],
            self.codes[:, :rows],
            self.numbers[:, :rows],
            self.timed[:rows],
        )

    def text(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.texts[k], self.offsets[k], self.valid[k]


def _runs(buf: np.ndarray, start: int) -> list[tuple[int, int]]:
    """``buf[start:]`` cut after line breaks into runs of at most about RUN_BYTES, at least
    two when there is more than one line (one per thread)."""
    size = len(buf) - start
    pieces = max(2, -(-size // RUN_BYTES))
    cuts = [start]
    for p in range(1, pieces):
        at = start + size * p // pieces
        at = max(at, cuts[-1])
        nl = np.flatnonzero(buf[at : at + (1 << 20)] == 10)
        if not len(nl):
            continue  # a line longer than a megabyte: this run goes on
        cut = at + int(nl[0]) + 1
        if cut < len(buf):
            cuts.append(cut)
    cuts.append(len(buf))
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def _spellings(groups: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """The accepted spellings as padded byte rows and lengths (-1: no name)."""
    widest = max(len(v.encode()) for group in groups for v in group)
    most = max(len(group) for group in groups)
    names = np.zeros((len(groups), most, max(widest, 1)), np.uint8)
    lengths = np.full((len(groups), most), -1, np.int64)
    for g, group in enumerate(groups):
        for k, value in enumerate(group):
            raw = value.encode()
            names[g, k, : len(raw)] = np.frombuffer(raw, np.uint8)
            lengths[g, k] = len(raw)
    return names, lengths


def _strings(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A string array over the parser's buffers (no copy; nulls where a cell was empty)."""
    rows = len(valid)
    nulls = rows - int(np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    used = data[: int(offsets[-1])]
    return pa.Array.from_buffers(
        pa.string(), rows, [bitmap, pa.py_buffer(offsets), pa.py_buffer(used)], nulls
    )


def _dictionary(indices: np.ndarray, values: tuple[str, ...] | list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(
        pa.array(indices), pa.array(list(values), pa.string())
    ).cast(DICTIONARY_TYPE)


def _times(values: np.ndarray, present: np.ndarray) -> pa.Array:
    rows = len(values)
    nulls = rows - int(np.count_nonzero(present))
    bitmap = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(
        pa.timestamp("us", tz="UTC"), rows, [bitmap, pa.py_buffer(values)], nulls
    )


def _map(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="fastcsv") as pool:
        return list(pool.map(fn, items))
