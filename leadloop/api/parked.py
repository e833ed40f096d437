"""`/api/v1/parked-events`: the events the processor set aside, and re-driving them, as
`leadloop events parked|redrive` do (docs/decisions/0006-parked-events.md).

A re-drive is asked in the database (`park.request_redrive`) and answered once the engine whose
processor leads took it up (this one, or a `worker`): the same path as the CLI's, whichever
process leads. No `from __future__ import annotations` here: FastAPI reads the local aliases.
"""

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Response

from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.api.params import Cursor, Limit, RowId
from leadloop.clock import monotonic
from leadloop.log import park

if TYPE_CHECKING:
    from leadloop.app import Engine

WAIT = 10.0
"""Seconds a re-drive request waits for the outcome; past it, the answer is `requested` (202)
and the engine still takes it up."""

T = TypeVar("T")
Outcome = Literal["processed", "failed", "gone", "requested"]


def parked_router(engine: "Engine") -> APIRouter:
    workspace = bearer_workspace(engine)
    Workspace = Annotated[str, Depends(workspace)]
    router = APIRouter(prefix="/api/v1", dependencies=admin_dependencies(workspace))

    @router.get(
        "/parked-events",
        summary="Events set aside because processing them failed every time, with the error",
    )
    async def parked_events(ws: Workspace, after: Cursor = 0, limit: Limit = 100) -> dict[str, Any]:
        items = await engine.read(lambda c: park.page(c, ws, after, limit))
        return {
            "items": [i.as_dict() for i in items],
            "next_after": items[-1].id if len(items) == limit else None,
        }

    @router.post(
        "/parked-events/{parked_id}/redrive",
        summary="Process a parked event again (after the events that followed it): processed "
        "deletes its row, failed keeps it with one attempt more, gone (erased meanwhile) "
        "deletes it with nothing processed",
    )
    async def redrive(ws: Workspace, parked_id: RowId, response: Response) -> dict[str, Any]:
        def ask(c: Any) -> dict[int, int] | None:
            row = park.get(c, parked_id)
            if row is None or row.workspace_id != ws:
                return None
            park.request_redrive(c, [parked_id], engine.clock.now())
            return {row.id: row.seq}

        seqs = await _write(engine, ask)
        if seqs is None:
            raise HTTPException(404, detail="no such parked event in this workspace")
        [(outcome, row)] = await _outcomes(engine, seqs)
        if outcome == "requested":
            response.status_code = 202
        return {"id": parked_id, "outcome": outcome, "parked": row and row.as_dict()}

    @router.post(
        "/parked-events/redrive-all",
        summary="Process every parked event of the workspace again, in log order",
    )
    async def redrive_all(ws: Workspace, response: Response) -> dict[str, Any]:
        def ask(c: Any) -> dict[int, int]:
            seqs = {r.id: r.seq for r in park.list_parked(c, ws)}
            park.request_redrive(c, list(seqs), engine.clock.now())
            return seqs

        seqs = await _write(engine, ask)
        ids = list(seqs)
        outcomes = [o for o, _ in await _outcomes(engine, seqs)]
        if "requested" in outcomes:
            response.status_code = 202
        return {
            "items": [{"id": i, "outcome": o} for i, o in zip(ids, outcomes, strict=True)],
            **{o: outcomes.count(o) for o in ("processed", "failed", "gone", "requested")},
        }

    return router


async def _write(engine: "Engine", job: Callable[[Any], T]) -> T:
    """`job` in one transaction of the engine's writer (the check and the mark together)."""
    return await asyncio.wrap_future(engine.writer.submit(job))


async def _outcomes(
    engine: "Engine", seqs: dict[int, int]
) -> list[tuple[Outcome, park.ParkedEvent | None]]:
    """What became of each asked-for event (`seqs`: parked id to log position, read with the
    request), as `leadloop events redrive` reports it: processed (its row is removed), gone
    (erased: its row is removed too), failed (the row stays, asked for no longer), or still
    requested."""
    deadline = monotonic() + WAIT

    def read(c: Any) -> list[tuple[Outcome, park.ParkedEvent | None]]:
        return [_outcome(c, park.get(c, i), seq) for i, seq in seqs.items()]

    while True:
        outcomes = await engine.read(read)
        if all(o != "requested" for o, _ in outcomes) or monotonic() > deadline:
            return outcomes
        await asyncio.sleep(0.2)


def _outcome(
    c: Any, row: park.ParkedEvent | None, seq: int
) -> tuple[Outcome, park.ParkedEvent | None]:
    if row is None:
        return park.removed(c, seq), None
    return ("requested" if row.redrive_requested_at is not None else "failed"), row
