"""The tracking API over HTTP: the contract real clients rely on, and bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.integration.conftest import Api

TRACK = {"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}}


@pytest.mark.parametrize("path", ["/v1/track", "/v1/t"])
def test_single_event_is_200_with_json(api: Api, path: str) -> None:
    r = api.client.post(path, content=json.dumps(TRACK), headers=api.basic())
    assert r.status_code == 200
    assert r.json() == {"success": True}
    assert api.event_count() == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/identify", {"userId": "u", "traits": {"a": 1}}),
        ("/v1/i", {"userId": "u", "context": {"traits": {"a": 1}}}),
        ("/v1/page", {"anonymousId": "a", "name": "Home", "properties": {"path": "/"}}),
        ("/v1/p", {"anonymousId": "a"}),
        ("/v1/screen", {"anonymousId": "a", "name": "Welcome"}),
        ("/v1/s", {"anonymousId": "a"}),
        ("/v1/group", {"userId": "u", "groupId": "g", "traits": {"n": 1}}),
        ("/v1/g", {"userId": "u", "groupId": "g"}),
        ("/v1/alias", {"userId": "u", "previousId": "a"}),
        ("/v1/a", {"userId": "u", "previousId": "a"}),
        ("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "E"}]}),
        ("/v1/b", {"batch": [{"type": "page", "anonymousId": "a"}]}),
    ],
)
def test_every_endpoint(api: Api, path: str, body: dict) -> None:
    r = api.client.post(path, content=json.dumps(body), headers=api.basic())
    assert r.status_code == 200, r.text
    assert api.event_count() == 1


def test_write_key_in_body_and_text_plain(api: Api) -> None:
    body = {**TRACK, "writeKey": api.write_key}
    r = api.client.post("/v1/t", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200


def test_gzip_body(api: Api) -> None:
    body = gzip.compress(json.dumps({"batch": [{**TRACK, "type": "track"}]}).encode())
    r = api.client.post(
        "/v1/batch", content=body, headers={**api.basic(), "Content-Encoding": "gzip"}
    )
    assert r.status_code == 200
    assert api.event_count() == 1


def test_metrics_endpoint_is_accepted_and_discarded(api: Api) -> None:
    r = api.client.post("/v1/m", content='{"series": []}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and api.event_count() == 0


def test_cors_preflight_and_exposed_retry_after(api: Api) -> None:
    r = api.client.options(
        "/v1/t",
        headers={
            "Origin": "http://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] == "http://shop.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"]
    r = api.client.post(
        "/v1/t", content=json.dumps(TRACK), headers={**api.basic(), "Origin": "http://shop.example"}
    )
    assert r.headers["access-control-expose-headers"] == "Retry-After"


def test_duplicate_message_ids_are_dropped(api: Api) -> None:
    body = json.dumps({**TRACK, "messageId": "dup-1"})
    for _ in range(3):
        assert api.client.post("/v1/track", content=body, headers=api.basic()).status_code == 200
    assert api.event_count() == 1


# -- bad input: a clear error and nothing stored ------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[]", "invalid_json"),
        (json.dumps({"event": "X"}).encode(), "missing_id"),
        (json.dumps({"userId": "u", "event": ["X"]}).encode(), "missing_event"),
        (json.dumps({"userId": "u", "event": "X", "properties": "p"}).encode(), "invalid_field"),
        (
            json.dumps({"userId": "u", "event": "X", "timestamp": "soon"}).encode(),
            "invalid_timestamp",
        ),
    ],
)
def test_bad_input_is_400_with_code_and_stores_nothing(api: Api, body: bytes, code: str) -> None:
    r = api.client.post("/v1/track", content=body, headers=api.basic())
    assert r.status_code == 400
    assert r.json()["code"] == code and r.json()["message"]
    assert api.event_count() == 0


def test_oversize_message_is_400(api: Api) -> None:
    body = {**TRACK, "properties": {"blob": "x" * 40_000}}
    r = api.client.post("/v1/track", content=json.dumps(body), headers=api.basic())
    assert r.status_code == 400 and r.json()["code"] == "message_too_large"
    assert api.event_count() == 0


def test_oversize_batch_is_400(api: Api) -> None:
    batch = [{**TRACK, "type": "track", "properties": {"blob": "x" * 20_000}} for _ in range(30)]
    r = api.client.post("/v1/batch", content=json.dumps({"batch": batch}), headers=api.basic())
    assert r.status_code == 400 and r.json()["code"] == "request_too_large"
    assert api.event_count() == 0


@pytest.mark.parametrize("declared", [b"9" * 5000, "\u00b2".encode(), "\u0663".encode()])
def test_a_hostile_content_length_is_answered_cleanly(api: Api, declared: bytes) -> None:
    """5,000 digits made `int` raise in the length check (a 500); a length that is not ASCII
    digits is no length at all, and the body is counted as it arrives."""
    headers = {**api.basic(), "content-length": declared}
    r = api.client.post("/v1/track", content=json.dumps(TRACK), headers=headers)
    if declared.isdigit():
        assert r.status_code == 400 and r.json()["code"] == "request_too_large"
        assert api.event_count() == 0
    else:
        assert r.status_code == 200, r.text


def test_bad_gzip_is_400(api: Api) -> None:
    r = api.client.post(
        "/v1/batch", content=b"\x1f\x8bgarbage", headers={**api.basic(), "Content-Encoding": "gzip"}
    )
    assert r.status_code == 400 and r.json()["code"] == "bad_encoding"
    assert api.event_count() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Basic d2tfbm9wZTo="},  # wk_nope:
        {"Authorization": "Bearer something"},
    ],
)
def test_unknown_or_missing_key_is_401(api: Api, headers: dict[str, str]) -> None:
    r = api.client.post("/v1/track", content=json.dumps(TRACK), headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert api.event_count() == 0


def test_conflicting_keys_from_two_workspaces_are_refused(api: Api) -> None:
    body = {**TRACK, "writeKey": api.other_key}
    r = api.client.post("/v1/track", content=json.dumps(body), headers=api.basic())
    assert r.status_code == 401
    assert api.event_count() == 0


def test_a_batch_message_with_another_workspaces_key_is_refused(api: Api) -> None:
    """The browser's batches carry the write key in every message too: one naming another
    workspace was stored in the request's workspace, where a single message with the same two
    keys is refused."""
    batch = [
        {**TRACK, "type": "track", "writeKey": api.write_key},
        {**TRACK, "type": "track", "messageId": "other-site", "writeKey": api.other_key},
    ]
    body = {"batch": batch, "writeKey": api.write_key}
    r = api.client.post("/v1/b", content=json.dumps(body), headers=api.basic())
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert "batch[1].writeKey" in r.json()["message"]
    assert api.event_count() == 0
    same = {"batch": batch[:1], "writeKey": api.write_key}
    r = api.client.post("/v1/b", content=json.dumps(same), headers=api.basic())
    assert r.status_code == 200, r.text


def test_another_workspaces_key_writes_only_there(api: Api) -> None:
    r = api.client.post(
        "/v1/identify", content=json.dumps({"userId": "u9"}), headers=api.basic(api.other_key)
    )
    assert r.status_code == 200
    api.settle()
    r = api.client.get("/api/v1/profiles/lookup?type=user_id&value=u9", headers=api.bearer())
    assert r.status_code == 404
    r = api.client.get(
        "/api/v1/profiles/lookup?type=user_id&value=u9", headers=api.bearer(api.other_token)
    )
    assert r.status_code == 200


def test_overloaded_writer_answers_429_with_retry_after(api: Api) -> None:
    api.engine.writer._max_pending = 0  # every request now finds the writer "full"
    api.engine.writer._pending = 1
    try:
        r = api.client.post("/v1/track", content=json.dumps(TRACK), headers=api.basic())
    finally:
        api.engine.writer._pending = 0
        api.engine.writer._max_pending = 50_000
    assert r.status_code == 429
    assert r.headers["retry-after"].isdigit()
    assert api.event_count() == 0


# -- admin API ----------------------------------------------------------------------------


def test_admin_api_profile_lookup_events_and_account(api: Api) -> None:
    batch = [
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": "Ada@Example.com"},
        },
        {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"employees": 120}},
        *[{"type": "track", "userId": "u1", "event": f"E{i}"} for i in range(5)],
    ]
    assert (
        api.client.post(
            "/v1/batch", content=json.dumps({"batch": batch}), headers=api.basic()
        ).status_code
        == 200
    )
    api.settle()
    r = api.client.get(
        "/api/v1/profiles/lookup",
        params={"type": "email", "value": "ada@example.com"},
        headers=api.bearer(),
    )
    assert r.status_code == 200
    prof = r.json()
    assert {"type": "anonymous_id", "value": "a1"} in prof["identities"]
    assert prof["accounts"] == ["acme"] and "scores" in prof
    assert (
        api.client.get(f"/api/v1/profiles/{prof['id']}", headers=api.bearer()).json()["id"]
        == prof["id"]
    )
    page1 = api.client.get(
        f"/api/v1/profiles/{prof['id']}/events?limit=4", headers=api.bearer()
    ).json()
    assert len(page1["events"]) == 4 and page1["next_after"]
    page2 = api.client.get(
        f"/api/v1/profiles/{prof['id']}/events?limit=4&after={page1['next_after']}",
        headers=api.bearer(),
    ).json()
    assert len(page2["events"]) == 3 and page2["next_after"] is None
    acct = api.client.get("/api/v1/accounts/acme", headers=api.bearer()).json()
    assert acct["traits"] == {"employees": 120} and acct["profiles"] == [prof["id"]]


def test_two_leads_behind_one_switchboard_stay_two_people(api: Api) -> None:
    """A phone's E.164 form drops its extension: the second lead was merged into the first, and
    a look-up by a number with an extension found whoever had the switchboard's."""
    batch = [
        {"type": "identify", "anonymousId": f"lead-{n}", "traits": {"phone": phone}}
        for n, phone in enumerate(
            ("+1 650 253 0000", "+1 650-253-0000 ext. 1", "+1 650 253 0000 x2")
        )
    ]
    r = api.client.post("/v1/batch", json={"batch": batch}, headers=api.basic())
    assert r.status_code == 200, r.text
    api.settle()
    found = [
        api.client.get(
            "/api/v1/profiles/lookup",
            params={"type": "anonymous_id", "value": f"lead-{n}"},
            headers=api.bearer(),
        ).json()["id"]
        for n in range(3)
    ]
    assert len(set(found)) == 3
    r = api.client.get(
        "/api/v1/profiles/lookup",
        params={"type": "phone", "value": "+1 650-253-0000 ext. 1"},
        headers=api.bearer(),
    )
    assert r.status_code == 404, r.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/profiles/nope", 404),
        ("/api/v1/accounts/nope", 404),
        ("/api/v1/profiles/lookup?type=user_id&value=nobody", 404),
        ("/api/v1/profiles/lookup?type=shoe_size&value=9", 400),
        ("/api/v1/profiles/lookup?type=user_id", 400),
        ("/api/v1/profiles/x/events?limit=100000", 400),
    ],
)
def test_admin_api_bad_requests(api: Api, path: str, status: int) -> None:
    r = api.client.get(path, headers=api.bearer())
    assert r.status_code == status
    assert set(r.json()) == {"code", "message"}


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDo="}]
)
def test_admin_api_needs_a_token(api: Api, headers: dict[str, str]) -> None:
    r = api.client.get("/api/v1/profiles/lookup?type=user_id&value=u", headers=headers)
    assert r.status_code == 401


def test_a_write_key_is_not_an_admin_token(api: Api) -> None:
    r = api.client.get(
        "/api/v1/profiles/lookup?type=user_id&value=u", headers=api.bearer(api.write_key)
    )
    assert r.status_code == 401


def test_healthz_and_openapi(api: Api) -> None:
    assert api.client.get("/healthz").status_code == 200
    spec = api.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/profiles/lookup" in spec["paths"]


def test_clock_advance_only_with_manual_clock(api: Api) -> None:
    before = api.engine.clock.now()
    r = api.client.post("/api/v1/clock/advance", json={"seconds": 3600}, headers=api.bearer())
    assert r.status_code == 200 and r.json()["now"] == pytest.approx(before + 3600)
    r = api.client.post("/api/v1/clock/advance", json={"seconds": -1}, headers=api.bearer())
    assert r.status_code == 400
    api.engine.manual_clock = None
    r = api.client.post("/api/v1/clock/advance", json={"seconds": 1}, headers=api.bearer())
    assert r.status_code == 404


def test_erasure_over_the_admin_api(api: Api) -> None:
    body = {"userId": "erase-me", "traits": {"email": "erase@example.com"}}
    assert (
        api.client.post("/v1/identify", content=json.dumps(body), headers=api.basic()).status_code
        == 200
    )
    api.settle()
    prof = api.client.get(
        "/api/v1/profiles/lookup?type=user_id&value=erase-me", headers=api.bearer()
    ).json()
    assert (
        api.client.delete(
            f"/api/v1/profiles/{prof['id']}", headers=api.bearer(api.other_token)
        ).status_code
        == 404
    )
    r = api.client.delete(f"/api/v1/profiles/{prof['id']}", headers=api.bearer())
    assert r.status_code == 200 and r.json()["erased"] == prof["id"]
    assert api.client.get(f"/api/v1/profiles/{prof['id']}", headers=api.bearer()).status_code == 404
    assert api.event_count() == 0
    assert api.client.delete("/api/v1/profiles/nope", headers=api.bearer()).status_code == 404
    assert api.client.delete(f"/api/v1/profiles/{prof['id']}").status_code == 401
