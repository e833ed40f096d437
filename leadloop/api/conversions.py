"""`GET /api/v1/conversions`: per destination sent, failed, skipped with reasons, match-key
coverage; `GET /api/v1/conversions/items`: the conversion outbox rows (bearer admin token).

No `from __future__ import annotations` here: FastAPI reads the local `Workspace` alias.
"""

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.api.params import Cursor, Limit
from leadloop.conversions import queries

if TYPE_CHECKING:
    from leadloop.app import Engine


def conversions_router(engine: "Engine") -> APIRouter:
    workspace = bearer_workspace(engine)
    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1", dependencies=admin_dependencies(workspace))

    @router.get(
        "/conversions",
        summary="Conversions per destination: sent, failed, skipped with reasons, coverage",
    )
    async def summary(ws: Workspace) -> dict[str, Any]:
        return await engine.read(lambda c: queries.summary(c, ws))

    @router.get("/conversions/items", summary="Conversion outbox rows and their delivery state")
    async def items(
        ws: Workspace,
        status: Annotated[
            Literal["pending", "delivered", "dead", "skipped"] | None, Query()
        ] = None,
        destination: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        after: Cursor = 0,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        found = await engine.read(
            lambda c: queries.list_conversions(
                c, ws, status=status, destination=destination, after=after, limit=limit
            )
        )
        return {"items": found, "next_after": found[-1]["id"] if len(found) == limit else None}

    return router
