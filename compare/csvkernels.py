"""The compiled loop of :mod:`compare.fastcsv`: one pass over a run of reference CSV rows.

It accepts a strict subset of what the careful loader
(:func:`compare.settlement.load_settlement`) accepts, and converts it the same way:
fields unquoted or quoted whole (no quote, line break or non-ASCII byte inside),
every row with every column, events, statuses and currencies spelled as the
reference spells them, amounts in the plain decimal form with no more decimals
than the currency has, and times as ``YYYY-MM-DD[T ]HH:MM:SS[.ffffff]`` with
``Z`` or ``+HH:MM``.  Anything else stops it (it returns the row), and the
careful loader reads the file instead: it accepts what this does not, or names
the bad cell.
"""

from __future__ import annotations

import numpy as np

from .jit import inline, kernel

__all__ = ["ROLES", "parse"]

#: What the parser does with each column, by the reference field it holds.
ROLES = {
    "transaction_id": 1,
    "round_id": 2,
    "player_id": 3,
    "ref_transaction_id": 4,
    "event": 5,
    "status": 6,
    "currency": 7,
    "amount": 8,
    "settled_at": 9,
}
_SKIP, _EVENT, _STATUS, _CURRENCY, _AMOUNT, _SETTLED = 0, 5, 6, 7, 8, 9
_QUOTE, _COMMA, _LF, _CR = 34, 44, 10, 13
_US = 1_000_000


@inline
def _lookup(buf: np.ndarray, a: int, b: int, names: np.ndarray, lengths: np.ndarray) -> int:
    """Index of the name spelled by ``buf[a:b]`` (names padded in rows), or -1."""
    for k in range(len(lengths)):
        if lengths[k] == b - a:
            same = True
            for t in range(b - a):
                if names[k, t] != buf[a + t]:
                    same = False
                    break
            if same:
                return k
    return -1


@inline
def _digits(buf: np.ndarray, a: int, b: int) -> int:
    """The number spelled by ``buf[a:b]`` (1 to 18 digits), or -1."""
    if b <= a or b - a > 18:
        return -1
    v = 0
    for t in range(a, b):
        d = buf[t] - 48
        if d < 0 or d > 9:
            return -1
        v = v * 10 + d
    return v


@inline
def _amount(buf: np.ndarray, a: int, b: int, exp: int) -> int:
    """Minor units of a plain decimal amount with at most ``exp`` decimals, or -1."""
    dot = b
    for t in range(a, b):
        if buf[t] == 46:
            dot = t
            break
    whole = _digits(buf, a, dot)
    if whole < 0 or (dot - a > 1 and buf[a] == 48) or dot - a + exp > 18:
        return -1
    value: int = whole * 10**exp
    if dot < b:
        frac = _digits(buf, dot + 1, b)
        places = b - dot - 1
        if frac < 0 or places > exp:
            return -1
        value += frac * 10 ** (exp - places)
    return value


@inline
def _days(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@inline
def _month_days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m == 4 or m == 6 or m == 9 or m == 11 else 31


@inline
def _fixed(buf: np.ndarray, a: int, n: int) -> int:
    return _digits(buf, a, a + n)


@inline
def _minute(buf: np.ndarray, a: int) -> int:
    """Seconds from the epoch to the minute ``YYYY-MM-DD?HH:MM`` at ``a`` (UTC), or -1."""
    if buf[a + 4] != 45 or buf[a + 7] != 45 or buf[a + 13] != 58:
        return -1
    if buf[a + 10] != 84 and buf[a + 10] != 32:  # 'T' or ' '
        return -1
    y, mo, d = _fixed(buf, a, 4), _fixed(buf, a + 5, 2), _fixed(buf, a + 8, 2)
    h, mi = _fixed(buf, a + 11, 2), _fixed(buf, a + 14, 2)
    if y < 0 or mo < 1 or mo > 12 or d < 1 or h < 0 or h > 23 or mi < 0 or mi > 59:
        return -1
    if d > _month_days(y, mo):
        return -1
    return _days(y, mo, d) * 86400 + h * 3600 + mi * 60


@inline
def _time(buf: np.ndarray, a: int, b: int, last: int, minute: int) -> tuple[bool, int, int]:
    """Microseconds since the epoch of an RFC 3339 time with its offset, and the seconds
    to its minute.  Times in an export come in order, so the minute is usually the one
    of the time before (at ``last``, ``minute`` seconds): then it is not parsed again."""
    if b - a < 20 or buf[a + 16] != 58:
        return False, 0, 0
    same = last >= 0
    if same:
        for t in range(16):
            if buf[a + t] != buf[last + t]:
                same = False
                break
    if not same:
        minute = _minute(buf, a)
        if minute == -1:
            return False, 0, 0
    s = _fixed(buf, a + 17, 2)
    if s < 0 or s > 59:
        return False, 0, 0
    t = a + 19
    us = 0
    if t < b and buf[t] == 46:
        start = t + 1
        t = start
        while t < b and 48 <= buf[t] <= 57:
            t += 1
        places = t - start
        if places < 1 or places > 6:
            return False, 0, 0
        us = _digits(buf, start, t) * 10 ** (6 - places)
    offset = 0
    if t == b - 1 and buf[t] == 90:  # 'Z'
        offset = 0
    elif t == b - 6 and (buf[t] == 43 or buf[t] == 45) and buf[t + 3] == 58:
        oh, om = _fixed(buf, t + 1, 2), _fixed(buf, t + 4, 2)
        if oh < 0 or oh > 23 or om < 0 or om > 59:
            return False, 0, 0
        offset = (oh * 3600 + om * 60) * (1 if buf[t] == 43 else -1)
    else:
        return False, 0, 0
    return True, (minute + s - offset) * _US + us, minute


@inline
def _text(
    buf: np.ndarray, a: int, b: int, r: int, data: np.ndarray, offsets: np.ndarray,
    valid: np.ndarray,
) -> bool:  # fmt: skip
    """Copy a text cell (empty: null); False for a byte outside ASCII."""
    at = offsets[r]
    for t in range(a, b):
        if buf[t] >= 128:
            return False
        data[at] = buf[t]
        at += 1
    offsets[r + 1] = at
    valid[r] = b > a
    return True


@kernel
def parse(
    buf: np.ndarray, lo: int, hi: int, roles: np.ndarray, rows: int,
    texts: tuple[np.ndarray, ...], offsets: np.ndarray, valid: np.ndarray,
    names: np.ndarray, lengths: np.ndarray, exps: np.ndarray,
    event: np.ndarray, status: np.ndarray, currency: np.ndarray, amount: np.ndarray,
    settled: np.ndarray, timed: np.ndarray,
) -> tuple[int, int]:  # fmt: skip
    """Parse the rows of ``buf[lo:hi]`` (room for ``rows``); returns (-1, the rows), or
    (the first row it refuses, 0).

    Text cells go to ``texts[k]`` / ``offsets[k]`` / ``valid[k]`` (k = role - 1); the
    others to the row arrays.  ``names[g]`` and ``lengths[g]`` spell the events (g = 0),
    statuses (1) and currencies (2).
    """
    ncols = len(roles)
    i = lo
    r = 0
    last, minute = -1, 0  # the time before, and the seconds to its minute
    while i < hi:
        if r >= rows:
            return r, 0
        am_a, am_b, cur = -1, -1, -1
        for c in range(ncols):
            if i < hi and buf[i] == _QUOTE:
                a = i + 1
                j = a
                while j < hi and buf[j] != _QUOTE:
                    if buf[j] == _LF or buf[j] == _CR:
                        return r, 0
                    j += 1
                if j >= hi:
                    return r, 0
                b = j
                i = j + 1
            else:
                a = i
                j = i
                while j < hi:
                    ch = buf[j]
                    if ch == _COMMA or ch == _LF or ch == _CR:
                        break
                    if ch == _QUOTE:
                        return r, 0
                    j += 1
                b = j
                i = j
            if c < ncols - 1:
                if i >= hi or buf[i] != _COMMA:
                    return r, 0
                i += 1
            else:
                if i < hi and buf[i] == _CR:
                    i += 1
                if i >= hi or buf[i] != _LF:
                    return r, 0
                i += 1
            role = roles[c]
            at = r
            if role == _SKIP:
                continue
            if role <= 4:
                k = role - 1
                if not _text(buf, a, b, r, texts[k], offsets[k], valid[k]):
                    return r, 0
                if role == 1 and b == a:
                    return r, 0  # an empty transaction id: the careful loader names it
            elif role == _EVENT:
                event[at] = _lookup(buf, a, b, names[0], lengths[0])
                if event[at] < 0:
                    return r, 0
            elif role == _STATUS:
                status[at] = _lookup(buf, a, b, names[1], lengths[1])
                if status[at] < 0:
                    return r, 0
            elif role == _CURRENCY:
                cur = _lookup(buf, a, b, names[2], lengths[2])
                if cur < 0:
                    return r, 0
                currency[at] = cur
            elif role == _AMOUNT:
                am_a, am_b = a, b
            elif role == _SETTLED:
                if b == a:
                    timed[at] = 0
                    settled[at] = 0
                else:
                    ok, value, minute = _time(buf, a, b, last, minute)
                    if not ok:
                        return r, 0
                    last = a
                    timed[at] = 1
                    settled[at] = value
        if am_a >= 0:
            if cur < 0:
                return r, 0
            value = _amount(buf, am_a, am_b, exps[cur])
            if value < 0:
                return r, 0
            amount[r] = value
        r += 1
    return -1, r
