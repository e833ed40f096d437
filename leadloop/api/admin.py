"""The admin REST API under `/api/v1` (bearer admin token; OpenAPI at /api/v1/openapi.json)."""

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.api.params import Cursor, Limit, Score, invalid
from leadloop.identity import queries
from leadloop.outbox import service as outbox_service
from leadloop.scoring import queries as score_queries

if TYPE_CHECKING:
    from leadloop.app import Engine

IdentityKind = Literal["user_id", "anonymous_id", "email", "phone", "external_id"]


class ClockAdvance(BaseModel):
    # Strict and closed: `"10"` and `true` were read as seconds, and a misspelt key was
    # dropped while the clock still moved.
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(ge=0, le=10 * 365 * 86400, strict=True)


def admin_router(engine: "Engine") -> APIRouter:
    workspace = bearer_workspace(engine)
    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1", dependencies=admin_dependencies(workspace))

    async def _decorated(view: dict[str, Any]) -> dict[str, Any]:
        # In a worker thread, as every read: a predicted score replays the profile's history,
        # which on the event loop held up every other request for a lead with many events.
        return await asyncio.to_thread(engine.decorate_profile, view)

    @router.get("/profiles/lookup", summary="Find a profile by one of its identities")
    async def lookup(
        ws: Workspace,
        type: Annotated[IdentityKind, Query()],
        value: Annotated[str, Query(min_length=1, max_length=512)],
    ) -> dict[str, Any]:
        from leadloop.identity.normalize import normalize_email, phone_identity

        needle: str | None = value
        if type == "email":
            needle = normalize_email(value)
        elif type == "phone":
            needle = phone_identity(value, engine.settings.default_region)
        if needle is None:
            raise HTTPException(404, detail="no profile has that identity")
        view = await engine.read(lambda c: _lookup_view(c, ws, type, needle or ""))
        if view is None:
            raise HTTPException(404, detail="no profile has that identity")
        return await _decorated(view)

    @router.get("/profiles", summary="Profiles by score and stage in one scoring model")
    async def scored(
        ws: Workspace,
        model: Annotated[str, Query(min_length=1, max_length=200)],
        stage: Annotated[str | None, Query(min_length=1, max_length=2000)] = None,
        min_score: Score | None = None,
        max_score: Score | None = None,
        after: Annotated[str, Query(max_length=512)] = "",
        limit: Limit = 100,
    ) -> dict[str, Any]:
        playbook = engine.playbooks.get(ws)
        found = playbook.model(model) if playbook is not None else None
        if found is None:
            models = ", ".join(m.id for m in playbook.models) if playbook is not None else ""
            raise HTTPException(
                404,
                detail=f"no scoring model {model!r} in the live playbook"
                + (f" (its models: {models})" if models else " (it has none)"),
            )
        stages: set[str] = set()
        for name in (stage or "").split(",") if stage is not None else ():
            known = found.stage(name.strip())
            if known is None:
                names = ", ".join(s.name for s in found.stages)
                raise invalid(
                    "query", "stage", f"{name.strip()!r} is not a stage of {model!r} ({names})"
                )
            stages.add(known.name.casefold())
        if min_score is not None and max_score is not None and min_score > max_score:
            raise invalid("query", "min_score", "must not be above max_score")
        where = score_queries.ScoreFilter(frozenset(stages), min_score, max_score)
        now = engine.clock.now()
        items, nxt = await engine.read(
            lambda c: score_queries.scored_profiles(c, ws, model, where, after, limit, now)
        )
        return {"model": model, "as_of": now, "profiles": items, "next_after": nxt}

    @router.get("/profiles/{profile_id}", summary="A profile, its identities, traits and scores")
    async def profile(ws: Workspace, profile_id: str) -> dict[str, Any]:
        view = await engine.read(lambda c: queries.profile_view(c, ws, profile_id))
        if view is None:
            raise HTTPException(404, detail="no such profile")
        return await _decorated(view)

    @router.delete("/profiles/{profile_id}", summary="Erase a person (GDPR): every trace of them")
    async def erase(ws: Workspace, profile_id: str) -> dict[str, Any]:
        pid = await engine.read(lambda c: queries.canonical_id(c, ws, profile_id))
        if pid is None:
            raise HTTPException(404, detail="no such profile")
        erased = await asyncio.wrap_future(engine.erase(ws, pid))
        return {"erased": pid, "profiles": erased}

    @router.get("/profiles/{profile_id}/events", summary="A profile's events, oldest first")
    async def events(
        ws: Workspace,
        profile_id: str,
        after: Cursor = 0,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        def run(c: Any) -> dict[str, Any] | None:
            pid = queries.canonical_id(c, ws, profile_id)
            if pid is None:
                return None
            items = queries.profile_events(c, ws, pid, after, limit)
            nxt = items[-1]["seq"] if len(items) == limit else None
            return {"profile_id": pid, "events": items, "next_after": nxt}

        page = await engine.read(run)
        if page is None:
            raise HTTPException(404, detail="no such profile")
        return page

    @router.get("/profiles/{profile_id}/score-ledger", summary="Why a profile has its score")
    async def score_ledger(
        ws: Workspace,
        profile_id: str,
        model: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        after: Cursor = 0,
        limit: Limit = 200,
    ) -> dict[str, Any]:
        def run(c: Any) -> dict[str, Any] | None:
            pid = queries.canonical_id(c, ws, profile_id)
            if pid is None:
                return None
            items = score_queries.ledger(c, ws, pid, model, after, limit)
            nxt = items[-1]["id"] if len(items) == limit else None
            return {"profile_id": pid, "entries": items, "next_after": nxt}

        page = await engine.read(run)
        if page is None:
            raise HTTPException(404, detail="no such profile")
        return page

    @router.get("/outbox", summary="Outgoing effects and their delivery state (dead letters too)")
    async def outbox(
        ws: Workspace,
        status: Annotated[
            Literal["pending", "delivered", "dead", "skipped"] | None, Query()
        ] = None,
        # The kinds the stages queue: another matched no row and listed nothing, which read
        # as an empty outbox. Refused with the allowed kinds named instead.
        kind: Annotated[outbox_service.Kind | None, Query()] = None,
        after: Cursor = 0,
        limit: Limit = 100,
    ) -> dict[str, Any]:
        items = await engine.read(
            lambda c: outbox_service.list_items(c, ws, status, kind, after, limit)
        )
        return {"items": items, "next_after": items[-1]["id"] if len(items) == limit else None}

    @router.get("/accounts/{account_id}", summary="An account (a `group`) and its members")
    async def account(ws: Workspace, account_id: str) -> dict[str, Any]:
        view = await engine.read(lambda c: queries.account_view(c, ws, account_id))
        if view is None:
            raise HTTPException(404, detail="no such account")
        return view

    @router.get(
        "/status",
        summary="The engine's log length, processor position and lag (engine-wide: the log and "
        "the processor are shared by every workspace, so any workspace's lag is this one)",
    )
    async def status(ws: Workspace) -> dict[str, Any]:
        return await engine.read(lambda c: engine.status(c, ws))

    @router.post("/clock/advance", summary="Move the manual clock (only with --clock manual)")
    async def advance(ws: Workspace, body: ClockAdvance) -> dict[str, Any]:
        if engine.manual_clock is None:
            # A bare "Not Found" read as a wrong path; the path is right, the engine's mode is not.
            raise HTTPException(
                404, detail="this engine runs on the system clock: start it with --clock manual"
            )
        now = await engine.advance_clock(body.seconds)
        return {"now": now}

    return router


def _lookup_view(conn: Any, ws: str, kind: str, value: str) -> dict[str, Any] | None:
    pid = queries.lookup(conn, ws, kind, value)
    return None if pid is None else queries.profile_view(conn, ws, pid)


class ApiError(BaseModel):
    """The body of every error: a stable `code` (`invalid_request`, `unauthorized`, …) and a
    message for people."""

    code: str
    message: str


INVALID_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ApiError,
        "description": "`invalid_request`: a parameter or the body fails its check; the "
        "message starts with where (`query.limit: …`)",
    }
}
"""The 400 every admin route may answer (an unknown query parameter is one on any route)."""


ADMIN_TOKEN = "adminToken"
UNAUTHORIZED: dict[str, Any] = {
    "description": "`unauthorized`: no bearer admin token, or an unknown one",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}},
}


def install_openapi(app: FastAPI) -> None:
    """FastAPI documents a `422` with its own error list on every route with parameters; this
    API answers those `400` with an `ApiError` (`install_error_handlers`), which the routes declare
    with `INVALID_REQUEST`. So the 422 and its schemas are dropped from the served document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
                    # Every documented route takes the admin token (`bearer_workspace`), a
                    # dependency FastAPI cannot see as security; declared here, Swagger UI
                    # offers "Authorize" and sends the token.
                    operation["security"] = [{ADMIN_TOKEN: []}]
                    operation["responses"]["401"] = UNAUTHORIZED
            components = schema["components"]
            for name in ("HTTPValidationError", "ValidationError"):
                components["schemas"].pop(name, None)
            components["securitySchemes"] = {
                ADMIN_TOKEN: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an admin token (`leadloop tokens create`)",
                }
            }
        return build()

    app.openapi = openapi  # type: ignore[method-assign]


_ERROR_CODES = {
    400: "invalid_request",  # the framework's own: a body that is not JSON or not UTF-8
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


def install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _ERROR_CODES.get(exc.status_code, "error")
        # The exception's own headers are the answer's: a 405's `Allow` (which HTTP requires
        # there) comes from the router that way.
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        message = str(exc.detail)
        if exc.status_code == 400:
            # No route raises a bare 400 (a bad parameter is a `RequestValidationError`): this
            # is FastAPI failing to decode a body, whose own message named no place.
            message = "body: not valid JSON (not UTF-8, or nested too deeply)"
        body = ApiError(code=code, message=message)
        return JSONResponse(body.model_dump(), exc.status_code, headers=headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid')}"
        if where == "body" and not _is_json(request.headers.get("content-type")):
            # FastAPI reads a body as JSON only when labelled so; `curl -d` labels it a form,
            # which failed as "Input should be a valid dictionary".
            message = "body: expected JSON, sent with Content-Type: application/json"
        return JSONResponse(ApiError(code="invalid_request", message=message).model_dump(), 400)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)


def _is_json(content_type: str | None) -> bool:
    """As FastAPI decides whether to decode a body: none given, `application/json` or `+json`."""
    if content_type is None:
        return True
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )
