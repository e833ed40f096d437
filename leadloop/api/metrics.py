"""`GET /api/v1/metrics` (campaign and funnel metrics over a window, bearer admin token) and
`GET /dashboard` (a page that shows them).

No `from __future__ import annotations`: FastAPI reads the local `Workspace` alias.
"""

import math
from datetime import UTC, date, datetime
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse

from leadloop.analytics import metrics, queries
from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.api.journeys import live_journeys
from leadloop.api.params import END_OF_TIME, invalid, is_decimal

if TYPE_CHECKING:
    from leadloop.app import Engine

DAY = 86400.0
DEFAULT_DAYS = 30
MAX_DAYS = 3660
"""About ten years: a wider window is a typo, and each metric scans its rows."""
LAST = 0.001
"""The last instant of a day, as far before the next midnight (a millisecond, the finest
resolution the tracking API keeps)."""
_BOUND = Annotated[str | None, Query(max_length=40)]


def instant(name: str, text: str | None, *, end: bool = False) -> float | None:
    """A window bound: a date (UTC, `2026-11-01` or `20261101`; `since=2026-11-01` starts at its
    first instant,
    `until=2026-11-30` ends at its last, so a range of dates holds both days as a reader
    expects), a date and time with a zone (`2026-11-01T09:00:00+01:00`, `...Z`) or seconds
    since the epoch. A time without a zone is refused rather than read in some zone the caller
    did not mean."""
    if text is None:
        return None
    raw = text
    if len(raw) == 8 and raw.isascii() and raw.isdigit():
        # ISO 8601's basic form of a date (20261101), not seconds in August 1970.
        raw = f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    # Not `float`: it also reads "1e9", " 10", "1_000" and other scripts' digits ("٣").
    if is_decimal(raw):
        return _within(name, float(raw))
    if raw.startswith("-") and is_decimal(raw[1:]):
        return _within(name, -math.inf)  # before 1970 ("-0" too): refused, naming the range
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
            return _within(name, start + DAY - LAST if end else start)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(
            "query",
            name,
            "expected a date (2026-11-01), a date and time with a zone, or epoch seconds",
        ) from None
    if moment.tzinfo is None:
        raise invalid("query", name, "a date and time needs a zone (Z or +01:00)")
    # A zone can move a date past either end (9999-12-31T23:00-05:00 is in year 10000), where
    # the day of the instant, which the spend is read by, cannot be written.
    return _within(name, moment.timestamp())


def _within(name: str, at: float) -> float:
    if not math.isfinite(at) or not 0 <= at < END_OF_TIME:
        raise invalid(
            "query", name, "must be between 1970 (0 seconds since the epoch) and year 9999"
        )
    return at


def _day(at: float) -> str:
    """The UTC day of an instant: spend is imported per day."""
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def metrics_router(engine: "Engine") -> APIRouter:
    workspace = bearer_workspace(engine)
    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1", dependencies=admin_dependencies(workspace))

    def stages_of(ws: str) -> dict[str, list[str]]:
        return {m.id: [s.name for s in m.stages] for m in engine.scoring_models(ws)}

    @router.get(
        "/metrics",
        summary="Campaign and funnel metrics over a window: messages, journeys, stages, revenue",
    )
    async def report(ws: Workspace, since: _BOUND = None, until: _BOUND = None) -> dict[str, Any]:
        end = instant("until", until, end=True)
        start = instant("since", since)
        # One bound alone: the 30 days from or to it, both ends included, so `since` a date
        # ends on the last instant of its 30th day (not the 31st's midnight, whose whole day
        # of spend was counted against an instant of its orders), and `until` likewise; each
        # kept within the bounds a request may give, so the answer's window can be sent back.
        if end is None:
            end = (
                engine.clock.now()
                if start is None
                else min(start + DEFAULT_DAYS * DAY - LAST, END_OF_TIME - LAST)
            )
        elif start is None:
            start = max(end - DEFAULT_DAYS * DAY + LAST, 0.0)
        if start is None:
            start = end - DEFAULT_DAYS * DAY
        if start > end:
            raise invalid("query", "since", "must not be after until")
        if end - start > MAX_DAYS * DAY:
            raise invalid("query", "since", f"the window is at most {MAX_DAYS} days")
        stages = stages_of(ws)
        windows = {j.id: j.conversion_window for j in live_journeys(engine, ws)}

        def read(c: Any) -> dict[str, Any]:
            messages = queries.message_counts(c, ws, start, end)
            revenue = queries.revenue(c, ws, start, end)
            return {
                "since": start,
                "until": end,
                "messages": {
                    "by_channel": [m.report() for m in metrics.channel_totals(messages)],
                    "by_template": [m.report() for m in messages],
                },
                "journeys": [
                    j.report() for j in queries.journey_counts(c, ws, start, end, windows)
                ],
                "funnel": metrics.funnel(queries.stage_moves(c, ws, start, end), stages),
                "revenue": [r.report() for r in revenue],
                "acquisition": metrics.acquisition(
                    queries.spend(c, ws, _day(start), _day(end)),
                    revenue,
                    queries.new_customers(c, ws, start, end),
                ),
            }

        return await engine.read(read)

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
