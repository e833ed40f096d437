"""The window metrics are read over: `since` and `until` as the admin API and the CLI take them.

One reading for both, so `leadloop metrics --since D` and `GET /api/v1/metrics?since=D` answer
for the same instants.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime

DAY = 86400.0
DEFAULT_DAYS = 30
MAX_DAYS = 3660
"""About ten years: a wider window is a typo, and each metric scans its rows."""
LAST = 0.001
"""The last instant of a day, as far before the next midnight (a millisecond, the finest
resolution the tracking API keeps)."""
END_OF_TIME = 253402300800.0
"""The first instant of year 10000: Python's dates end before it, so no bound may reach it."""
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
"""Epoch seconds as a query spells them: ASCII digits, an optional fraction."""
BOUND_LIMIT = 40
"""Characters of a bound: the longest date and time with a zone and fraction is 32."""


class WindowError(Exception):
    """A bound that names no instant, or a window that is no window; `name` is the bound."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name}: {message}")


def instant(name: str, text: str | None, *, end: bool = False) -> float | None:
    """A window bound: a date (UTC, `2026-11-01` or `20261101`; `since=2026-11-01` starts at its
    first instant,
    `until=2026-11-30` ends at its last, so a range of dates holds both days as a reader
    expects), a date and time with a zone (`2026-11-01T09:00:00+01:00`, `...Z`) or seconds
    since the epoch. A time without a zone is refused rather than read in some zone the caller
    did not mean."""
    if text is None:
        return None
    if len(text) > BOUND_LIMIT:
        raise WindowError(name, f"at most {BOUND_LIMIT} characters, got {len(text):,}")
    raw = text
    if not raw.isprintable():
        # NUL and the like: no bound holds one.
        raise WindowError(name, "control characters are not allowed")
    if len(raw) == 8 and raw.isascii() and raw.isdigit():
        # ISO 8601's basic form of a date (20261101), not seconds in August 1970.
        raw = f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    # Not `float`: it also reads "1e9", " 10", "1_000" and other scripts' digits ("٣").
    if _DECIMAL.fullmatch(raw):
        return _within(name, float(raw))
    if raw.startswith("-") and _DECIMAL.fullmatch(raw[1:]):
        return _within(name, -math.inf)  # before 1970 ("-0" too): refused, naming the range
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
            return _within(name, start + DAY - LAST if end else start)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WindowError(
            name, "expected a date (2026-11-01), a date and time with a zone, or epoch seconds"
        ) from None
    if moment.tzinfo is None:
        raise WindowError(name, "a date and time needs a zone (Z or +01:00)")
    # A zone can move a date past either end (9999-12-31T23:00-05:00 is in year 10000), where
    # the day of the instant, which the spend is read by, cannot be written.
    return _within(name, moment.timestamp())


def _within(name: str, at: float) -> float:
    if not math.isfinite(at) or not 0 <= at < END_OF_TIME:
        raise WindowError(name, "must be between 1970 (0 seconds since the epoch) and year 9999")
    return at


def window(since: str | None, until: str | None, now: float) -> tuple[float, float]:
    """`[since, until]` as given, both included; without either, the `DEFAULT_DAYS` up to
    `now`; one bound alone, the `DEFAULT_DAYS` from or to it."""
    end = instant("until", until, end=True)
    start = instant("since", since)
    # One bound alone: the 30 days from or to it, both ends included, so `since` a date
    # ends on the last instant of its 30th day (not the 31st's midnight, whose whole day
    # of spend was counted against an instant of its orders), and `until` likewise; each
    # kept within the bounds a request may give, so the answer's window can be sent back.
    if end is None:
        end = now if start is None else min(start + DEFAULT_DAYS * DAY - LAST, END_OF_TIME - LAST)
    elif start is None:
        start = max(end - DEFAULT_DAYS * DAY + LAST, 0.0)
    if start is None:
        start = end - DEFAULT_DAYS * DAY
    if start > end:
        raise WindowError("since", "must not be after until")
    if end - start > MAX_DAYS * DAY:
        raise WindowError("since", f"the window is at most {MAX_DAYS} days")
    return start, end
