"""Journeys in the admin API: `GET /api/v1/journeys` and `GET /api/v1/profiles/{id}/journeys`.

No `from __future__ import annotations`: FastAPI reads the dependency annotations at runtime.
"""

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.identity import queries as identity_queries
from leadloop.journeys import queries
from leadloop.journeys.config import live_journeys

if TYPE_CHECKING:
    from leadloop.app import Engine


def journeys_router(engine: "Engine") -> APIRouter:
    workspace = bearer_workspace(engine)
    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1", dependencies=admin_dependencies(workspace))

    @router.get("/journeys", summary="Journeys: versions, instances per step, holdout and lift")
    async def journeys(ws: Workspace) -> dict[str, Any]:
        found = live_journeys(engine.playbooks.get(ws))
        live = {j.id: j.version for j in found}
        windows = {j.id: j.conversion_window for j in found}
        items = await engine.read(lambda c: queries.journeys_overview(c, ws, live, windows))
        return {"journeys": items}

    @router.get(
        "/profiles/{profile_id}/journeys", summary="Where each of a profile's journeys is, and why"
    )
    async def profile_journeys(ws: Workspace, profile_id: str) -> dict[str, Any]:
        def run(c: Any) -> dict[str, Any] | None:
            pid = identity_queries.canonical_id(c, ws, profile_id)
            if pid is None:
                return None
            return {
                "profile_id": pid,
                "journeys": queries.profile_journeys(c, ws, pid),
                "not_entered": queries.not_entered(c, ws, pid),
                "sends": queries.sends(c, ws, pid),
            }

        found = await engine.read(run)
        if found is None:
            raise HTTPException(404, detail="no such profile")
        return found

    return router
