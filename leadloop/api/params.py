"""Parameters shared by the `/api/v1` routes, and the checks FastAPI does not make itself.

A bad parameter is a 400 that names it: never a 500, never quietly ignored.

* A cursor (`after`) stops at the largest 64-bit integer, the id type of both databases: a
  larger one overflowed the driver (a 500).
* A query parameter the route does not take, or one given twice, is refused: a misspelt or
  misplaced filter (`/outbox?destination=…`) used to list everything unfiltered.
* NUL is refused in every path and query value: PostgreSQL text cannot hold it (so no stored id
  or identity has one), and the driver raised on it (a 500).
* A number is ASCII digits (and, for a time, one decimal point): Python and pydantic also read
  " 10", "+5", "1_000", "1e3", "10.0" and other scripts' digits ("٣" is 3), so a typo or a
  mangled link was answered as some other page than the one asked for.
"""

import re
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from leadloop.analytics.window import END_OF_TIME

MAX_CURSOR = 2**63 - 1

_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(\.[0-9]+)?")
_SIGNED = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_PAST_ANY_BOUND = 40
"""Digits beyond any bound here: a longer number is refused by its `le` without being read."""


def _spelt(pattern: re.Pattern[str], expected: str) -> Any:
    def check(value: object) -> object:
        if not isinstance(value, str):
            return value
        # `re` reads `[0-9]` as ASCII only, and `fullmatch` leaves no space or sign around.
        if not pattern.fullmatch(value):
            raise PydanticCustomError("number_format", expected)
        return value if len(value) <= _PAST_ANY_BOUND else "9" * _PAST_ANY_BOUND

    return BeforeValidator(check)


WholeNumber = _spelt(_WHOLE, "expected a whole number in ASCII digits (0-9)")
DecimalNumber = _spelt(_DECIMAL, "expected a number in ASCII digits (0-9), with an optional '.'")
SignedNumber = _spelt(
    _SIGNED, "expected a number in ASCII digits (0-9), with an optional leading '-' and '.'"
)

Cursor = Annotated[int, WholeNumber, Query(ge=0, le=MAX_CURSOR)]
"""An id or sequence number to list after."""
RowId = Annotated[int, WholeNumber, Path(ge=1, le=MAX_CURSOR)]
"""A row's id in the path (both databases' ids are positive 64-bit integers)."""
Limit = Annotated[int, WholeNumber, Query(ge=1, le=1000)]
"""How many items one page holds."""
Instant = Annotated[float, DecimalNumber, Query(ge=0, lt=END_OF_TIME, allow_inf_nan=False)]
"""Epoch seconds to list after."""
Score = Annotated[float, SignedNumber, Query(ge=-1e9, le=1e9, allow_inf_nan=False)]
"""A score bound (scores go below 0 with negative points)."""


def invalid(where: str, name: str, message: str) -> RequestValidationError:
    """The 400 that names a bad parameter (`where`: `query` or `path`)."""
    return RequestValidationError([{"loc": (where, name), "msg": message, "type": "value_error"}])


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


async def strict_params(request: Request) -> None:
    """A route dependency: refuse unknown or repeated query parameters and NUL anywhere."""
    route: Any = request.scope.get("route")
    known = _query_names(route.dependant) if isinstance(route, APIRoute) else None
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        if known is not None and name not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise invalid("query", name, f"not a parameter of this endpoint (it takes: {allowed})")
        if name in seen:
            raise invalid("query", name, "given more than once")
        seen.add(name)
        if "\x00" in value:
            raise invalid("query", name, "must not contain a NUL character")
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            raise invalid("path", name, "must not contain a NUL character")
