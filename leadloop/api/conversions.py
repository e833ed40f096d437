"""`GET /api/v1/conversions`: per destination sent, failed, skipped with reasons, match-key
coverage; `GET /api/v1/conversions/items`: the conversion outbox rows (bearer admin token).

No `from __future__ import annotations` here: FastAPI reads the local `Workspace` alias.
"""

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from leadloop.conversions import queries

if TYPE_CHECKING:
    from leadloop.app import Engine


def conversions_router(engine: "Engine") -> APIRouter:
    async def workspace(request: Request) -> str:
        # Same bearer-token rule as leadloop/api/admin.py.
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, detail="a bearer admin token is required")
        ws = await engine.workspace_for_token(token.strip())
        if ws is None:
            raise HTTPException(401, detail="unknown admin token")
        return ws

    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1")

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
        destination: Annotated[str | None, Query(max_length=200)] = None,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        found = await engine.read(
            lambda c: queries.list_conversions(
                c, ws, status=status, destination=destination, after=after, limit=limit
            )
        )
        return {"items": found, "next_after": found[-1]["id"] if len(found) == limit else None}

    return router
