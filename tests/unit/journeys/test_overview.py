"""`journeys_overview`'s not-entered totals, from memberships written as the writer stores them."""

from __future__ import annotations

from pathlib import Path

import msgspec

from leadloop.journeys import queries
from leadloop.journeys.model import Membership
from leadloop.storage.db import SqliteConnection
from leadloop.storage.migrate import migrate


def test_not_entered_totals_count_profiles_and_times(tmp_path: Path) -> None:
    conn = SqliteConnection(str(tmp_path / "o.db"))
    migrate(conn)
    conn.execute(
        "INSERT INTO journey_versions (workspace_id, journey_id, version, created_at, definition) "
        "VALUES ('ws', 'a', 'v1', 0, '{}'), ('ws', 'b', 'v1', 0, '{}'), ('other', 'a', 'v1', 0, '{}')"
    )
    members = {
        ("ws", "p1"): {"a": Membership(skipped=3, skip_reason='"skipped": in a reason')},
        ("ws", "p2"): {"a": Membership(skipped=1), "b": Membership(entries=2)},
        ("ws", "p3"): {"b": Membership(entries=1, skip_reason='"skipped":')},
        ("other", "p4"): {"a": Membership(skipped=5)},
    }
    for (ws, pid), state in members.items():
        conn.execute(
            "INSERT INTO journey_profiles (workspace_id, profile_id, state) VALUES (?, ?, ?)",
            (ws, pid, msgspec.json.encode(state).decode()),
        )
    overview = {j["id"]: j for j in queries.journeys_overview(conn, "ws", {"a": "v1", "b": "v1"})}
    assert overview["a"]["not_entered"] == {"profiles": 2, "times": 4}
    assert overview["b"]["not_entered"] == {"profiles": 0, "times": 0}
    conn.close()
