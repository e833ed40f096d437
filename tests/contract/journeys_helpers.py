"""Shared pieces of the journey contract tests that drive small, purpose-built journeys: a
harness on a playbook fragment, and exact reads of instances, timers, sends and outbox rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient

from leadloop.api.journeys import journeys_router
from leadloop.storage import workspaces
from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import journey_harness, playbook_with_journeys

HOUR = 3600.0
DAY = 24 * HOUR
START = 1_800_000_000.0
"""The harness's manual clock at start: Friday 2027-01-15 08:00 UTC."""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """An instant from its UTC date and time: utc(2027, 1, 15, 8) == START."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


@contextmanager
def flows(backend_url: str, tmp_path: Path, fragment: str) -> Iterator[Harness]:
    """The example playbook with `fragment` as its journeys section. Webhook rows stay in the
    outbox (the webhook sender is removed, like the message sender) so tests can read them."""
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, fragment))
    h.engine.dispatcher.senders.pop("webhook", None)
    try:
        yield h
    finally:
        h.engine.stop()


def person(h: Harness, user: str, **traits: Any) -> str:
    """Identify `user` (with an email unless given) and return its profile id."""
    h.send({"type": "identify", "userId": user, "traits": {"email": f"{user}@x.test", **traits}})
    h.settle()
    found = h.profile("user_id", user)
    assert found is not None
    return str(found["id"])


def people(h: Harness, users: list[str]) -> dict[str, str]:
    """Identify several users in one batch (each with an email); their profile ids by user."""
    h.send(*({"type": "identify", "userId": u, "traits": {"email": f"{u}@x.test"}} for u in users))
    h.settle()
    pids = {}
    for user in users:
        found = h.profile("user_id", user)
        assert found is not None
        pids[user] = str(found["id"])
    return pids


def track(h: Harness, user: str, event: str, **properties: Any) -> None:
    h.send({"type": "track", "userId": user, "event": event, "properties": properties})
    h.settle()


def pricing(h: Harness, user: str) -> None:
    """A pricing page view: 10 points in the example playbook's `lead` model."""
    h.send({"type": "page", "userId": user, "name": "Pricing", "properties": {"path": "/pricing"}})
    h.settle()


def instances(h: Harness, pid: str, journey: str) -> list[tuple[str, str | None, str | None]]:
    """(status, step, reason) of each of the profile's instances of `journey`, oldest first."""
    rows = h.sql(
        "SELECT status, step, reason FROM journey_instances WHERE profile_id = ? "
        "AND journey_id = ? ORDER BY entered_at, id",
        pid,
        journey,
    )
    return [(r[0], r[1], r[2]) for r in rows]


def timers(h: Harness, pid: str, kind: str = "journey") -> list[float]:
    """Due times of the profile's pending journey timers (`kind`: `segment` for those that
    watch its segments)."""
    rows = h.sql(
        "SELECT due_at FROM timers WHERE profile_id = ? AND key LIKE ? ORDER BY due_at",
        pid,
        f"{kind}:%",
    )
    return [float(r[0]) for r in rows]


def outbox(h: Harness, kind: str, pid: str) -> list[tuple[str, dict[str, Any]]]:
    """(destination, payload) of the profile's outbox rows of `kind`, in order."""
    rows = h.sql(
        "SELECT destination, payload FROM outbox JOIN outbox_payloads USING (id) "
        "WHERE kind = ? AND profile_id = ? ORDER BY id",
        kind,
        pid,
    )
    return [(r[0], json.loads(r[1])) for r in rows]


def templates(h: Harness, pid: str) -> list[str]:
    """Templates of the profile's queued messages, in order."""
    return [payload["template"] for _dest, payload in outbox(h, "message", pid)]


def sends(h: Harness, pid: str) -> list[tuple[str, str, str, float | None]]:
    """(step, outcome, reason, until) of every policy decision for the profile, in order."""
    rows = h.sql(
        "SELECT step, outcome, reason, until FROM sends WHERE profile_id = ? ORDER BY id", pid
    )
    return [(r[0], r[1], r[2], None if r[3] is None else float(r[3])) for r in rows]


def admin_get(h: Harness, path: str) -> dict[str, Any]:
    """GET an admin API path of the journeys router with a fresh admin token (once per test)."""
    now = h.engine.clock.now()
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "helper", now)
    ).result()
    app = FastAPI()
    app.include_router(journeys_router(h.engine))
    with TestClient(app) as client:
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
