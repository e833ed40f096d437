"""A journey that reads a `${VAR}` gets a new version when the engine starts with another value:
instances waiting on the old one finish it as it was, new entrants run the new one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.contract.conftest import Harness
from tests.contract.test_journeys_runtime import EDIT_V1
from tests.contract.test_journeys_seed import journey_harness, playbook_with_journeys

pytestmark = pytest.mark.usefixtures("channels_env")

HOUR = 3600.0
FRAGMENT = EDIT_V1.replace("template: t2 }", "template: '${SECOND_TEMPLATE}' }")


def _go(h: Harness, user: str) -> None:
    h.send(
        {"type": "identify", "userId": user, "traits": {"email": f"{user}@x.test"}},
        {"type": "track", "userId": user, "event": "Go"},
    )
    h.settle()


def _versions(h: Harness) -> dict[str, str]:
    rows = h.sql(
        "SELECT p.value, i.version FROM journey_instances i "
        "JOIN identities p ON p.profile_id = i.profile_id AND p.type = 'user_id'"
    )
    return {str(user): str(version) for user, version in rows}


def _templates(h: Harness) -> dict[str, list[str]]:
    rows = h.sql(
        "SELECT p.value, payload FROM outbox o JOIN outbox_payloads USING (id) "
        "JOIN identities p ON p.profile_id = o.profile_id AND p.type = 'user_id' "
        "WHERE o.kind = 'message' ORDER BY o.id"
    )
    sent: dict[str, list[str]] = {}
    for user, payload in rows:
        sent.setdefault(str(user), []).append(json.loads(payload)["template"])
    return sent


def test_a_new_value_is_a_new_version_and_waiting_instances_keep_theirs(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    playbook = playbook_with_journeys(tmp_path, FRAGMENT)
    monkeypatch.setenv("SECOND_TEMPLATE", "t2")
    h = journey_harness(backend_url, playbook)
    try:
        _go(h, "early")
        (v1,) = set(_versions(h).values())
    finally:
        h.engine.stop()
    monkeypatch.setenv("SECOND_TEMPLATE", "t3")
    h = journey_harness(backend_url, playbook)
    try:
        _go(h, "late")
        versions = _versions(h)
        assert versions["early"] == v1 and versions["late"] != v1
        stored = dict(h.sql("SELECT version, definition FROM journey_versions"))
        assert set(stored) == {v1, versions["late"]}
        assert json.loads(stored[v1])["steps"][2]["template"] == "t2"
        assert json.loads(stored[versions["late"]])["steps"][2]["template"] == "t3"
        h.advance(24 * HOUR)  # both waits end: each sends what its version says
        assert _templates(h) == {"early": ["t1", "t2"], "late": ["t1", "t3"]}
    finally:
        h.engine.stop()
