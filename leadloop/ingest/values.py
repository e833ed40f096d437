"""What every value in an accepted message must be for both databases and every stage to hold it.

A message that passes `parse` is stored and then read by every stage, forever: a value one of
them cannot hold would be acknowledged and then fail on every retry. So these are refused up
front, naming the field, on SQLite and PostgreSQL alike:

- U+0000 in any string or key: PostgreSQL `TEXT` cannot store it (SQLite can, so accepting it
  there would make the two backends disagree about the same request);
- nesting deeper than `MAX_DEPTH`: decoding, re-encoding and the admin API's rendering all
  recurse, and fail far from the request that caused it;
- an integer beyond the range of a double: `1e400` is already refused by the JSON decoder, and
  the same number written out in digits must not get through and then fail `float()` in the
  stages that compare numbers.

The checks look at the message's JSON encoding first (each a C-speed scan), and only walk the
message, to find and name the field, when one of them could have matched.
"""

from __future__ import annotations

import sys
from typing import Any

from leadloop.ingest.model import MAX_DEPTH, Rejected

_NUL_ESCAPE = b"\\u0000"  # how msgspec encodes U+0000 in a string or key
_MAX_INT = int(sys.float_info.max)
_LONG_DIGITS = len(str(_MAX_INT))
# Every ASCII digit becomes "0" and every other byte "x": an integer beyond a double is a run
# of at least `_LONG_DIGITS` zeros in the result (msgspec writes floats in exponent form).
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 else 120 for i in range(256))
_LONG_RUN = b"0" * _LONG_DIGITS
_MAX_FIELD_CHARS = 200


def check_values(message: dict[str, Any], body: bytes, index: str) -> Rejected | None:
    """`body` is `message` as msgspec encodes it; `index` prefixes the field in the error."""
    suspect = (
        _NUL_ESCAPE in body
        or body.count(b"{") + body.count(b"[") > MAX_DEPTH
        or _LONG_RUN in body.translate(_DIGITS_TO_ZERO)
    )
    if not suspect:
        return None
    found = _find(message, 1)
    if found is None:
        return None  # the scan matched text inside a string, e.g. a literal "\u0000"
    path, problem = found
    field = _field(path) or "message"
    if len(field) > _MAX_FIELD_CHARS:
        field = field[: _MAX_FIELD_CHARS - 3] + "..."
    return Rejected("invalid_field", f"{index}{field} {problem}")


def _find(value: Any, depth: int) -> tuple[list[str | int], str] | None:
    """The first bad value under `value` (at nesting `depth`): its path, innermost part first,
    and what is wrong with it."""
    if isinstance(value, str):
        return ([], "contains U+0000 (NUL), which cannot be stored") if "\x00" in value else None
    if isinstance(value, int) and not isinstance(value, bool):
        if -_MAX_INT <= value <= _MAX_INT:
            return None
        return [], "is a number beyond the range of a double"
    if isinstance(value, dict):
        items: list[tuple[str | int, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return None
    if depth > MAX_DEPTH:
        return [], f"nests deeper than {MAX_DEPTH} levels"
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return [], "has a key that contains U+0000 (NUL), which cannot be stored"
        found = _find(item, depth + 1)
        if found is not None:
            found[0].append(key)
            return found
    return None


def _field(path: list[str | int]) -> str:
    """`properties.items[2].name` from the innermost-first path."""
    out = ""
    for part in reversed(path):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
