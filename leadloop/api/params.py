"""Parameters shared by the `/api/v1` routes, and the checks FastAPI does not make itself.

A bad parameter is a 400 that names it: never a 500, never quietly ignored.

* A cursor (`after`) stops at the largest 64-bit integer, the id type of both databases: a
  larger one overflowed the driver (a 500).
* A query parameter the route does not take, or one given twice, is refused: a misspelt or
  misplaced filter (`/outbox?destination=…`) used to list everything unfiltered.
* NUL is refused in every path and query value: PostgreSQL text cannot hold it (so no stored id
  or identity has one), and the driver raised on it (a 500).
"""

from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

MAX_CURSOR = 2**63 - 1

Cursor = Annotated[int, Query(ge=0, le=MAX_CURSOR)]
"""An id or sequence number to list after."""
Limit = Annotated[int, Query(ge=1, le=1000)]
"""How many items one page holds."""


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
