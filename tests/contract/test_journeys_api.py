"""The journeys admin API: versions, counts per step, holdout; a profile's instances and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from leadloop.api.journeys import journeys_router
from leadloop.storage import workspaces
from tests.contract.test_journeys_seed import (
    HOUR,
    become_lead,
    journey_harness,
    playbook_with_journeys,
)

pytestmark = pytest.mark.usefixtures("channels_env")


def test_journeys_and_profile_journeys(backend_url: str, tmp_path: Path) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path))
    try:
        now = h.engine.clock.now()
        token = h.engine.writer.submit(
            lambda c: workspaces.create_admin_token(c, "default", "t", now)
        ).result()
        pid = become_lead(h, "api-1")
        become_lead(h, "api-2")
        h.advance(73 * HOUR)
        app = FastAPI()
        app.include_router(journeys_router(h.engine))
        with TestClient(app) as client:
            assert client.get("/api/v1/journeys").status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            body = client.get("/api/v1/journeys", headers=auth).json()
            (journey,) = body["journeys"]
            assert journey["id"] == "lead_nurture" and journey["versions"][0]["live"]
            assert journey["treated"]["entered"] == 2 and journey["holdout"]["entered"] == 0
            assert sum(s["count"] for s in journey["steps"]) == 2
            mine = client.get(f"/api/v1/profiles/{pid}/journeys", headers=auth).json()
            (instance,) = mine["journeys"]
            assert instance["status"] == "completed"
            assert [(p["step"], p["kind"]) for p in instance["path"]] == [
                ("send_guide", "entered"),
                ("send_guide", "send"),
                ("wait_click", "wait_for"),
                ("wait_click", "timed_out"),
                ("switch_channel", "suppressed"),
                ("retarget", "audience"),
                (None, "completed"),
            ]
            # Stored as one row per transition (the entry, the timeout), read back line by line.
            assert h.sql("SELECT kind FROM journey_path WHERE profile_id = ? ORDER BY id", pid) == [
                ("entered",),
                ("timed_out",),
            ]
            assert [s["outcome"] for s in mine["sends"]] == ["queued", "suppressed"]
            assert client.get("/api/v1/profiles/nope/journeys", headers=auth).status_code == 404
    finally:
        h.engine.stop()
