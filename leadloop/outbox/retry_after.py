"""`Retry-After` (RFC 9110 §10.2.3), read one way for every sender: webhooks, channels and
conversions.

The field is delay-seconds ("120") or an HTTP-date. It is a singleton, yet a proxy or a
framework in front of a receiver sometimes adds its own copy, and the HTTP client joins repeated
lines into one comma-separated value ("120, 120"). Each element is then a floor the receiver (or
something on its way) asked for, so the longest is taken: it honours all of them, and the
caller's cap bounds what that costs. One unreadable element makes the whole field unreadable
(the caller falls back to its own backoff): a list with garbage in it is no clear request.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after", "retry_after_header"]

MAX_RETRY_AFTER = 24 * 3600.0
"""The default cap on an honoured Retry-After: a larger one would park items for good."""
_LONGEST = 365 * 86400.0
"""What a longer wait is read as: kept finite (400 digits were `inf`), and far above any cap."""

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_TIME = r"(\d{2}):(\d{2}):(\d{2})"
# RFC 9110 §5.6.7: recipients accept all three HTTP-date forms. ASCII: `\d` alone is any
# script's digit ("٠١"), which `int` reads too.
_IMF = re.compile(rf"^[A-Za-z]{{3}}, (\d{{2}}) ([A-Za-z]{{3}}) (\d{{4}}) {_TIME} GMT$", re.ASCII)
_RFC850 = re.compile(rf"^[A-Za-z]+, (\d{{2}})-([A-Za-z]{{3}})-(\d{{2}}) {_TIME} GMT$", re.ASCII)
_ASCTIME = re.compile(rf"^[A-Za-z]{{3}} ([A-Za-z]{{3}}) ([ \d]\d) {_TIME} (\d{{4}})$", re.ASCII)
_DAY_NAME = re.compile(r"\s*[A-Za-z]+")
"""What precedes the comma inside an IMF-fixdate or RFC 850 date ("Wed", "Wednesday")."""


def _epoch(year: int, month: str, day: int, hh: int, mm: int, ss: int) -> float | None:
    number = _MONTHS.get(month.lower())
    # Year 0 matches the four digits but is no year `timegm` can count from (ValueError).
    if number is None or year < 1 or not (1 <= day <= 31 and hh <= 23 and mm <= 59 and ss <= 60):
        return None
    return float(calendar.timegm((year, number, day, hh, mm, ss, 0, 0, 0)))


def _parse_http_date(text: str, now: float) -> float | None:
    if m := _IMF.match(text):
        day, month, year, hh, mm, ss = m.groups()
        return _epoch(int(year), month, int(day), int(hh), int(mm), int(ss))
    if m := _RFC850.match(text):
        day, month, yy, hh, mm, ss = m.groups()
        # RFC 9110: a two-digit year more than 50 years ahead is in the previous century.
        this_year = datetime.fromtimestamp(now, UTC).year  # converts `now`; reads no clock
        year = this_year - this_year % 100 + int(yy)
        if year > this_year + 50:
            year -= 100
        return _epoch(year, month, int(day), int(hh), int(mm), int(ss))
    if m := _ASCTIME.match(text):
        month, day, hh, mm, ss, year = m.groups()
        return _epoch(int(year), month, int(day.strip()), int(hh), int(mm), int(ss))
    return None


def _one(text: str, now: float | None) -> float | None:
    # ASCII only: `isdigit` is also true of "٣" (which `float` reads as 3) and "²" (it raises).
    if text.isascii() and text.isdigit():
        return min(float(text), _LONGEST)
    when = None if now is None else _parse_http_date(text, now)
    return None if when is None or now is None else min(max(0.0, when - now), _LONGEST)


def _elements(value: str) -> list[str]:
    """The comma-separated elements, a date's own comma ("Wed, 01 May …") kept in it."""
    elements: list[str] = []
    for part in value.split(","):
        if elements and _DAY_NAME.fullmatch(elements[-1]):
            elements[-1] += "," + part
        else:
            elements.append(part)
    return [element.strip() for element in elements]


def parse_retry_after(value: str | None, now: float | None) -> float | None:
    """Seconds to wait from `now`, from delay-seconds ("120") or an HTTP-date (read only when
    `now` is given); None if absent or unreadable. A date in the past means 0."""
    if value is None:
        return None
    waits = [_one(element, now) for element in _elements(value)]
    if any(wait is None for wait in waits):
        return None
    return max(wait for wait in waits if wait is not None)


def retry_after_header(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """`parse_retry_after` of the `Retry-After` field, found whatever its case."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(value, now)
