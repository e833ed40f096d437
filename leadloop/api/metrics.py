"""`GET /api/v1/metrics` (campaign and funnel metrics over a window, bearer admin token) and
`GET /dashboard` (a page that shows them).

No `from __future__ import annotations`: FastAPI reads the local `Workspace` alias.
"""

from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from leadloop.analytics.report import conversion_windows, funnel_stages, metrics_report
from leadloop.analytics.window import BOUND_LIMIT, WindowError, window
from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.api.params import invalid

if TYPE_CHECKING:
    from leadloop.app import Engine

_BOUND = Annotated[str | None, Query(max_length=BOUND_LIMIT)]


def metrics_router(engine: "Engine") -> APIRouter:
    workspace = bearer_workspace(engine)
    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1", dependencies=admin_dependencies(workspace))

    @router.get(
        "/metrics",
        summary="Campaign and funnel metrics over a window: messages, journeys, stages, revenue",
    )
    async def report(ws: Workspace, since: _BOUND = None, until: _BOUND = None) -> dict[str, Any]:
        now = engine.clock.now()
        try:
            start, end = window(since, until, now)
        except WindowError as error:
            raise invalid("query", error.name, error.message) from None
        playbook = engine.playbooks.get(ws)
        stages, windows = funnel_stages(playbook), conversion_windows(playbook)
        return await engine.read(lambda c: metrics_report(c, ws, start, end, now, stages, windows))

    return router


def dashboard_router() -> APIRouter:
    """The page needs no token to load: it holds no data, and asks for the admin token to
    fetch `/api/v1/metrics` with (kept for the browser tab only, in `sessionStorage`)."""
    router = APIRouter()
    page = resources.files("leadloop.api").joinpath("static", "dashboard.html").read_text("utf-8")

    @router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": (
                    "default-src 'none'; script-src 'self' 'unsafe-inline'; "
                    "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    return router
