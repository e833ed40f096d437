"""Input one backend or stage cannot hold, over HTTP on SQLite and PostgreSQL: the same 400
naming the field on both, nothing stored, and the pipeline still flowing behind it.

Before, U+0000 in an id was a 503 on PostgreSQL (retried forever by clients) but stored on
SQLite; in an email trait, or with a 20,000-character external id, it was acknowledged and
then stopped the PostgreSQL processor for good; an integer beyond a double stopped it on both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import msgspec
import pytest

from leadloop.ingest.model import Accepted
from leadloop.log import store
from leadloop.log.processor import CURSOR
from leadloop.storage.db import connect
from leadloop.testing import eventually
from tests.integration.conftest import Api, serve_api

DEEP: object = 1
for _ in range(40):
    DEEP = {"a": DEEP}


@pytest.fixture
def api(backend_url: str) -> Iterator[Api]:
    yield from serve_api(backend_url, run_processor=False)


def process_all(api: Api) -> None:
    """Run the processor until the log is consumed; a batch that fails raises here. (On
    PostgreSQL a committed event is read only once no older transaction is running, so a
    batch may come back empty at first.)"""
    conn = connect(api.engine.url)
    try:

        def consumed() -> bool:
            api.engine.processor.run_once(conn)
            return store.lag(conn, CURSOR) == 0

        eventually(consumed, timeout=30)
    finally:
        conn.close()


def post(api: Api, path: str, body: bytes) -> tuple[int, dict[str, str]]:
    r = api.client.post(path, content=body, headers=api.basic())
    return r.status_code, r.json()


def profile(api: Api, user_id: str) -> dict:
    r = api.client.get(
        "/api/v1/profiles/lookup",
        params={"type": "user_id", "value": user_id},
        headers=api.bearer(),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(
    ("path", "body", "code", "field"),
    [
        ("/v1/track", {"userId": "u\x00", "event": "E"}, "invalid_field", "userId"),
        ("/v1/t", {"userId": "u", "event": "E", "messageId": "\x00"}, "invalid_field", "messageId"),
        ("/v1/group", {"userId": "u", "groupId": "g\x00"}, "invalid_field", "groupId"),
        (
            "/v1/identify",
            {"userId": "u", "traits": {"email": "a\x00@b.co"}},
            "invalid_field",
            "traits.email",
        ),
        (
            "/v1/batch",
            {
                "batch": [
                    {"type": "track", "userId": "u", "event": "fine"},
                    {"type": "alias", "userId": "u", "previousId": "p\x00"},
                ]
            },
            "invalid_field",
            "batch[1].previousId",
        ),
        (
            "/v1/identify",
            {"userId": "u", "traits": {"employees": 10**400}},
            "invalid_field",
            "traits.employees",
        ),
        ("/v1/track", {"userId": "u", "event": "E", "properties": DEEP}, "invalid_field", "prop"),
        (
            "/v1/track",
            {"userId": "u", "event": "E", "timestamp": "9999-12-31T20:00:00-14:00"},
            "invalid_timestamp",
            "timestamp",
        ),
    ],
)
def test_unstorable_values_are_a_400_naming_the_field_on_every_backend(
    api: Api, path: str, body: dict, code: str, field: str
) -> None:
    status, answer = post(api, path, json.dumps(body).encode())
    assert status == 400, answer
    assert answer["code"] == code and answer["message"].startswith(field)
    assert api.event_count() == 0
    # And nothing is stuck behind it.
    assert post(api, "/v1/track", b'{"userId": "u", "event": "E"}')[0] == 200
    process_all(api)
    assert profile(api, "u")["identities"] == [{"type": "user_id", "value": "u"}]


@pytest.mark.parametrize(
    "body",
    [
        b'{"userId": "u", "event": "E", "properties": {"a": "\xed\xa0\x80"}}',
        b'{"userId": "u", "event": "E", "properties": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ],
    ids=["invalid-utf8", "deeper-than-the-decoder"],
)
def test_undecodable_bodies_are_a_400_not_a_500(api: Api, body: bytes) -> None:
    status, answer = post(api, "/v1/track", body)
    assert status == 400 and answer["code"] == "invalid_json"
    assert api.event_count() == 0


def test_a_log_written_before_the_checks_still_drains(api: Api) -> None:
    """Events an older version acknowledged (SQLite stored U+0000 anywhere; both stored any
    external id) are processed: the unstorable identifiers are ignored, the rest applies."""
    now = api.engine.clock.now()
    bodies = {
        "old-1": {"traits": {"email": "a\x00@b.co", "name": "Ada"}},
        "old-2": {"context": {"externalIds": [{"type": "crm", "id": "x" * 20_000}]}},
    }
    rows = [
        Accepted(
            message_id=mid,
            type="identify",
            event=None,
            user_id="u",
            anonymous_id=None,
            group_id=None,
            previous_id=None,
            timestamp=now,
            received_at=now,
            body=msgspec.json.encode({"type": "identify", "userId": "u", **body}),
        )
        for mid, body in bodies.items()
    ]
    api.engine.writer.append("default", rows).result()
    process_all(api)
    found = profile(api, "u")
    assert found["identities"] == [{"type": "user_id", "value": "u"}]
    assert found["traits"]["name"] == "Ada"
