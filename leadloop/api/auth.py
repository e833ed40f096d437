"""The bearer admin token of every `/api/v1` route, and the dependencies each router runs.

One definition: the four routers each had a copy of the token check.
"""

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Request

from leadloop.api.params import strict_params

if TYPE_CHECKING:
    from leadloop.app import Engine


def bearer_workspace(engine: "Engine") -> Callable[[Request], Awaitable[str]]:
    """A dependency: the workspace whose admin token the request carries, else 401."""

    async def workspace(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, detail="a bearer admin token is required")
        ws = await engine.workspace_for_token(token.strip())
        if ws is None:
            raise HTTPException(401, detail="unknown admin token")
        return ws

    return workspace


def admin_dependencies(workspace: Callable[[Request], Awaitable[str]]) -> list[Any]:
    """In this order: the token (401) before the parameters (400), so a caller without one
    learns nothing. FastAPI runs a dependency once per request, so the route's own
    `Depends(workspace)` reuses this answer."""
    return [Depends(workspace), Depends(strict_params)]
