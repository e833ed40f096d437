"""Profile merges: a merged-away profile's journey instances follow the survivor, on both
backends, whether the merge and the survivor's later events share a batch or not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import HOUR, journey_harness, playbook_with_journeys

pytestmark = pytest.mark.usefixtures("channels_env")

ONCE = """
journeys:
  templates:
    email: [guide, case_study]
  flows:
    - id: once
      entry: { event: Go }
      reentry: once
      steps:
        - { id: first, type: send, channel: email, template: guide, next: pause }
        - { id: pause, type: wait, duration: 1h, next: second }
        - { id: second, type: send, channel: email, template: case_study }
"""


def _visitor(anon: str) -> list[dict[str, Any]]:
    """An anonymous visitor who leaves an email and enters the journey."""
    return [
        {"type": "identify", "anonymousId": anon, "traits": {"email": f"{anon}@x.test"}},
        {"type": "track", "anonymousId": anon, "event": "Go"},
    ]


def _merge(anon: str, user: str) -> list[dict[str, Any]]:
    """A known user (its own profile), then the event that ties the visitor to them, then the
    same trigger again, now for the survivor."""
    return [
        {"type": "identify", "userId": user, "traits": {"plan": "pro"}},
        {"type": "identify", "userId": user, "anonymousId": anon},
        {"type": "track", "userId": user, "event": "Go"},
    ]


def _check(h: Harness, anon: str, user: str) -> None:
    survivor = h.profile("user_id", user)
    assert survivor is not None
    pid = survivor["id"]
    assert h.profile("anonymous_id", anon)["id"] == pid  # type: ignore[index]
    rows = h.sql("SELECT profile_id, status, step, state FROM journey_instances")
    assert [(r[0], r[1], r[2]) for r in rows] == [(pid, "waiting", "pause")], rows
    assert json.loads(rows[0][3])["profile_id"] == pid
    # Re-entry "once" holds across the merge: the survivor's own Go did not enter again.
    members = h.sql("SELECT profile_id, state FROM journey_profiles")
    assert [(p, json.loads(s)["once"]["entries"]) for p, s in members] == [(pid, 1)]
    assert h.sql("SELECT DISTINCT profile_id FROM journey_path") == [(pid,)]
    assert h.sql("SELECT DISTINCT profile_id FROM sends") == [(pid,)]

    h.advance(HOUR)
    sent = h.sql(
        "SELECT profile_id, payload FROM outbox JOIN outbox_payloads USING (id) WHERE kind = 'message' ORDER BY id",
    )
    assert [json.loads(p)["template"] for _pid, p in sent] == ["guide", "case_study"]
    assert sent[1][0] == pid and json.loads(sent[1][1])["profile_id"] == pid
    assert h.sql("SELECT profile_id, status FROM journey_instances") == [(pid, "completed")]


def test_instances_of_a_merged_profile_follow_the_survivor(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, ONCE))
    try:
        h.send(*_visitor("anon-a"))
        h.settle()
        (before,) = h.sql("SELECT profile_id FROM journey_instances")
        h.send(*_merge("anon-a", "user-a"))
        h.settle()
        assert h.profile("user_id", "user-a")["id"] != before[0]  # type: ignore[index]
        _check(h, "anon-a", "user-a")
    finally:
        h.engine.stop()


def test_a_merge_in_the_same_batch_as_the_entry_moves_the_instance(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, ONCE))
    try:
        h.send({"type": "identify", "userId": "user-b", "traits": {"plan": "pro"}})
        h.settle()
        # One request, one processor batch: entry, merge and the survivor's Go together.
        h.send(*_visitor("anon-b"), *_merge("anon-b", "user-b")[1:])
        h.settle()
        _check(h, "anon-b", "user-b")
    finally:
        h.engine.stop()


ALWAYS = ONCE.replace("id: once", "id: again").replace("reentry: once", "reentry: always")


def _instances(h: Harness, pid: str) -> list[tuple[str, str | None]]:
    return [
        (str(r[0]), r[1])
        for r in h.sql(
            "SELECT status, step FROM journey_instances WHERE profile_id = ? "
            "ORDER BY entered_at, id",
            pid,
        )
    ]


def test_reentry_always_enters_again_once_the_instance_has_ended(
    backend_url: str, tmp_path: Path
) -> None:
    # An instance that ends does not rewrite its membership: the membership still names it as
    # the active instance, and that must read as "none active" in a later batch.
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, ALWAYS))
    try:
        traits = {"email": "r@x.test"}
        h.send({"type": "identify", "userId": "r", "traits": traits})
        h.send({"type": "track", "userId": "r", "event": "Go"})
        h.settle()
        pid = h.profile("user_id", "r")["id"]  # type: ignore[index]
        h.send({"type": "track", "userId": "r", "event": "Go"})  # still waiting: no entry
        h.settle()
        assert _instances(h, pid) == [("waiting", "pause")]
        h.advance(HOUR)
        assert _instances(h, pid) == [("completed", None)]
        h.send({"type": "track", "userId": "r", "event": "Go"})
        h.settle()
        assert _instances(h, pid) == [("completed", None), ("waiting", "pause")]
    finally:
        h.engine.stop()


def test_a_merged_live_instance_blocks_reentry_of_a_survivor_whose_own_has_ended(
    backend_url: str, tmp_path: Path
) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path, ALWAYS))
    try:
        h.send({"type": "identify", "userId": "user-c", "traits": {"email": "c@x.test"}})
        h.send({"type": "track", "userId": "user-c", "event": "Go"})
        h.settle()
        h.advance(HOUR)  # the survivor's instance completes; its membership still names it
        h.send(*_visitor("anon-c"))
        h.settle()
        h.send(*_merge("anon-c", "user-c")[1:])
        h.settle()
        pid = h.profile("user_id", "user-c")["id"]  # type: ignore[index]
        # The visitor's live instance came along: the survivor's Go did not enter again.
        assert sorted(_instances(h, pid)) == [("completed", None), ("waiting", "pause")]
    finally:
        h.engine.stop()
