"""The admin API (`/api/v1`, not the tracking endpoints) against hostile input, through the
real ASGI app and engine: every refusal is a 4xx JSON error that names what was wrong, never a
500, never a quietly ignored parameter, never another workspace's data; and it changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from leadloop.log.batch import OutboxRow
from leadloop.outbox.service import KINDS, enqueue
from tests.integration.conftest import Api

PROFILE_ROUTES = ("", "/events", "/score-ledger", "/journeys", "/messages")
LISTS = ("/api/v1/outbox", "/api/v1/conversions/items")


def every_get_route(pid: str) -> list[str]:
    return [
        *(f"/api/v1/profiles/{pid}{suffix}" for suffix in PROFILE_ROUTES),
        "/api/v1/profiles/lookup?type=user_id&value=u1",
        "/api/v1/accounts/acme",
        "/api/v1/outbox",
        "/api/v1/conversions",
        "/api/v1/conversions/items",
        "/api/v1/journeys",
        "/api/v1/status",
    ]


def seed(api: Api) -> str:
    """A profile with events and an account in `default`, and a row of each outbox kind."""
    batch = [
        {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}},
        {"type": "group", "userId": "u1", "groupId": "acme"},
        {"type": "track", "userId": "u1", "event": "Signed Up"},
    ]
    r = api.client.post("/v1/batch", content=json.dumps({"batch": batch}), headers=api.basic())
    assert r.status_code == 200
    api.settle()
    lookup = "/api/v1/profiles/lookup?type=user_id&value=u1"
    pid = str(api.client.get(lookup, headers=api.bearer()).json()["id"])
    now = api.engine.clock.now()

    def insert(c: Any) -> None:
        kinds = ("message", "conversion")
        enqueue(c, [OutboxRow("default", k, "d", f"k-{k}", {}, pid, now) for k in kinds], now)
        c.execute("UPDATE outbox SET status = 'dead', attempts = 1")

    api.engine.writer.submit(insert).result()
    return pid


def snapshot(api: Api) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""

    def read(c: Any) -> tuple[Any, ...]:
        counts = tuple(
            c.execute(f"SELECT COUNT(*) FROM {table}")[0][0]
            for table in ("events", "profiles", "outbox", "accounts")
        )
        return (*counts, api.engine.clock.now())

    return api.engine.read_sync(read)


@pytest.fixture
def seeded(api: Api) -> Iterator[tuple[Api, str]]:
    yield api, seed(api)


# -- who may ask ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        None,
        "Bearer nope",
        "Bearer ",
        "Token x",
        "write-key",
        "basic-write-key",
    ],
)
def test_every_route_needs_an_admin_token(seeded: tuple[Api, str], auth: str | None) -> None:
    api, pid = seeded
    headers = {}
    if auth == "write-key":
        headers = api.bearer(api.write_key)
    elif auth == "basic-write-key":
        headers = api.basic()
    elif auth is not None:
        headers = {"Authorization": auth}
    before = snapshot(api)
    for path in every_get_route(pid):
        r = api.client.get(path, headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized"), path
    assert api.client.delete(f"/api/v1/profiles/{pid}", headers=headers).status_code == 401
    r = api.client.post("/api/v1/clock/advance", json={"seconds": 60}, headers=headers)
    assert r.status_code == 401
    for path in ["/api/v1/parked-events/1/redrive", "/api/v1/parked-events/redrive-all"]:
        assert api.client.post(path, headers=headers).status_code == 401, path
    assert snapshot(api) == before


def test_a_token_is_asked_for_before_the_parameters_are_judged(api: Api) -> None:
    r = api.client.get("/api/v1/outbox?bogus=1&after=-1")
    assert r.status_code == 401


def test_the_other_workspace_sees_and_changes_nothing(seeded: tuple[Api, str]) -> None:
    api, pid = seeded
    other = api.bearer(api.other_token)
    for path in [*(f"/api/v1/profiles/{pid}{s}" for s in PROFILE_ROUTES), "/api/v1/accounts/acme"]:
        assert api.client.get(path, headers=other).status_code == 404, path
    lookup = "/api/v1/profiles/lookup?type=email&value=ada@example.com"
    assert api.client.get(lookup, headers=other).status_code == 404
    for path in LISTS:
        assert api.client.get(path, headers=other).json()["items"] == [], path
        assert api.client.get(path, headers=api.bearer()).json()["items"], path
    assert api.client.get("/api/v1/conversions", headers=other).json() == {"destinations": {}}
    before = snapshot(api)
    assert api.client.delete(f"/api/v1/profiles/{pid}", headers=other).status_code == 404
    assert api.client.delete("/api/v1/profiles/u1", headers=other).status_code == 404
    assert snapshot(api) == before
    assert api.client.get(f"/api/v1/profiles/{pid}", headers=api.bearer()).status_code == 200


# -- query parameters -------------------------------------------------------------------------


def assert_invalid(r: Any, names: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "invalid_request"
    assert body["message"].startswith(names), body


@pytest.mark.parametrize("suffix", ["/events", "/score-ledger"])
@pytest.mark.parametrize("after", [str(2**63), "99999999999999999999999"])
def test_a_cursor_past_64_bits_is_a_400_not_a_500(
    seeded: tuple[Api, str], suffix: str, after: str
) -> None:
    api, pid = seeded
    r = api.client.get(f"/api/v1/profiles/{pid}{suffix}?after={after}", headers=api.bearer())
    assert_invalid(r, "query.after:")
    ok = api.client.get(f"/api/v1/profiles/{pid}{suffix}?after={2**63 - 1}", headers=api.bearer())
    assert ok.status_code == 200


@pytest.mark.parametrize("path", LISTS)
def test_a_list_cursor_past_64_bits_is_a_400_not_a_500(api: Api, path: str) -> None:
    assert_invalid(api.client.get(f"{path}?after={2**63}", headers=api.bearer()), "query.after:")


@pytest.mark.parametrize("after", ["inf", "-inf", "nan", "1e400"])
def test_a_message_cursor_must_be_a_finite_time(seeded: tuple[Api, str], after: str) -> None:
    api, pid = seeded
    r = api.client.get(f"/api/v1/profiles/{pid}/messages?after={after}", headers=api.bearer())
    assert_invalid(r, "query.after:")


# Each was read as some number: `int(" 10")`, `int("+5")`, `int("1_000")`, `int("٣")` are
# Python's, `1e3` and `10.0` pydantic's, and a time took any float spelling.
LENIENT = [
    "",
    "1e3",
    " 10",
    "10 ",
    "+5",
    "-0",
    "10abc",
    "٣",
    "١٠",
    "1_000",
    "0x10",
    "1,0",
    "1.",
    ".5",
]
NUMBERS = [
    ("/api/v1/outbox", "limit"),
    ("/api/v1/outbox", "after"),
    ("/api/v1/conversions/items", "limit"),
    ("/api/v1/profiles/{pid}/events", "after"),
    ("/api/v1/profiles/{pid}/score-ledger", "limit"),
    ("/api/v1/profiles/{pid}/messages", "limit"),
    ("/api/v1/profiles/{pid}/messages", "after"),
    ("/api/v1/metrics", "since"),
    ("/api/v1/metrics", "until"),
]


@pytest.mark.parametrize(("path", "name"), NUMBERS)
def test_a_number_in_the_query_is_ascii_digits_only(
    seeded: tuple[Api, str], path: str, name: str
) -> None:
    api, pid = seeded
    before = snapshot(api)
    whole = name == "limit" or (name == "after" and not path.endswith("/messages"))
    for value in [*LENIENT, "9" * 5000, *(["10.0"] if whole else [])]:
        r = api.client.get(path.format(pid=pid), params={name: value}, headers=api.bearer())
        assert_invalid(r, f"query.{name}:")
        assert len(r.text) < 500, r.text
    for value in ("10", "0010", *([] if whole else ["10.5"])):
        r = api.client.get(path.format(pid=pid), params={name: value}, headers=api.bearer())
        assert r.status_code == 200, (value, r.text)
    assert snapshot(api) == before


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/outbox?destination=meta", "query.destination"),  # a filter of another list
        ("/api/v1/outbox?stauts=dead", "query.stauts"),
        ("/api/v1/conversions/items?kind=message", "query.kind"),
        ("/api/v1/conversions?status=dead", "query.status"),
        ("/api/v1/journeys?journey=x", "query.journey"),
        ("/api/v1/status?verbose=1", "query.verbose"),
        ("/api/v1/profiles/{pid}/events?status=x", "query.status"),
        ("/api/v1/profiles/{pid}/messages?channel=sms", "query.channel"),
        ("/api/v1/profiles/{pid}/journeys?limit=1", "query.limit"),
    ],
)
def test_a_parameter_the_route_does_not_take_is_refused(
    seeded: tuple[Api, str], path: str, name: str
) -> None:
    api, pid = seeded
    r = api.client.get(path.format(pid=pid), headers=api.bearer())
    assert_invalid(r, f"{name}: not a parameter of this endpoint")


@pytest.mark.parametrize("kind", ["bogus", "messages", "Message", "dead"])
def test_an_unknown_outbox_kind_is_a_400_naming_the_kinds(
    seeded: tuple[Api, str], kind: str
) -> None:
    """An unknown kind matched no row, so the list came back empty, as if nothing had been
    queued; now it is refused, changing nothing, and the error lists what a kind may be."""
    api, _pid = seeded
    before = snapshot(api)
    r = api.client.get(f"/api/v1/outbox?kind={kind}", headers=api.bearer())
    assert_invalid(r, "query.kind:")
    assert all(f"'{known}'" in r.json()["message"] for known in KINDS), r.json()
    assert snapshot(api) == before
    for known in KINDS:
        listed = api.client.get(f"/api/v1/outbox?kind={known}", headers=api.bearer())
        assert listed.status_code == 200, known
        assert {item["kind"] for item in listed.json()["items"]} <= {known}
    listed = api.client.get("/api/v1/outbox?kind=message", headers=api.bearer()).json()
    assert [item["kind"] for item in listed["items"]] == ["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/outbox?status=dead&status=pending",
        "/api/v1/outbox?limit=1&limit=1000",
        "/api/v1/profiles/lookup?type=user_id&value=u1&type=email",
    ],
)
def test_a_parameter_given_twice_is_refused(api: Api, path: str) -> None:
    assert_invalid(api.client.get(path, headers=api.bearer()), "query.")
    assert "given more than once" in api.client.get(path, headers=api.bearer()).text


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/outbox?kind=",
        "/api/v1/conversions/items?destination=",
        "/api/v1/profiles/{pid}/score-ledger?model=",
    ],
)
def test_an_empty_filter_is_refused_not_ignored(seeded: tuple[Api, str], path: str) -> None:
    api, pid = seeded
    r = api.client.get(path.format(pid=pid), headers=api.bearer())
    assert_invalid(r, "query.")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        *((f"/api/v1/profiles/x%00y{s}", "path.profile_id") for s in PROFILE_ROUTES),
        ("/api/v1/accounts/acme%00", "path.account_id"),
        ("/api/v1/profiles/lookup?type=user_id&value=u1%00", "query.value"),
        ("/api/v1/profiles/lookup?type=email&value=a%00@example.com", "query.value"),
        ("/api/v1/outbox?kind=message%00", "query.kind"),
        ("/api/v1/conversions/items?destination=d%00", "query.destination"),
    ],
)
def test_nul_is_a_400_on_every_backend(any_api: Api, path: str, name: str) -> None:
    """PostgreSQL's driver raised on NUL (a 500); SQLite looked the id up."""
    assert_invalid(any_api.client.get(path, headers=any_api.bearer()), f"{name}:")


def test_erasing_an_id_with_nul_is_a_400_and_erases_nothing(any_api: Api) -> None:
    before = snapshot(any_api)
    r = any_api.client.delete("/api/v1/profiles/p%00", headers=any_api.bearer())
    assert_invalid(r, "path.profile_id:")
    assert snapshot(any_api) == before


@pytest.mark.parametrize(
    "profile_id", ["a" * 4000, "..%2F..%2Fstatus", "%E2%98%83", "x%0Ay", "%FF%FE", "%20"]
)
def test_odd_profile_ids_are_not_found(api: Api, profile_id: str) -> None:
    for suffix in PROFILE_ROUTES:
        r = api.client.get(f"/api/v1/profiles/{profile_id}{suffix}", headers=api.bearer())
        assert (r.status_code, r.json()["code"]) == (404, "not_found")


# -- POST /api/v1/clock/advance ---------------------------------------------------------------

ADVANCE = "/api/v1/clock/advance"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b'{"seconds": "10"}', "body.seconds:"),  # was read as 10 seconds
        (b'{"seconds": true}', "body.seconds:"),  # was read as 1 second
        (b'{"seconds": 10, "secnds": 5}', "body.secnds:"),  # was dropped, the clock moved
        (b'{"seconds": -1}', "body.seconds:"),
        (b'{"seconds": NaN}', "body.seconds:"),
        (b'{"seconds": Infinity}', "body.seconds:"),
        (b'{"seconds": 1e400}', "body.seconds:"),
        (b'{"seconds": null}', "body.seconds:"),
        (b"{}", "body.seconds:"),
        (b"[60]", "body:"),
        (b"sixty", "body"),
        (b"", "body:"),
        (b'{"seconds": 1' + b"0" * 5000 + b"}", ""),
        # FastAPI's own 400 for these said "There was an error parsing the body", no where.
        (b'{"seconds": 60}\xff', "body: not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body: not valid JSON"),
    ],
)
def test_a_bad_clock_body_is_a_400_and_the_clock_stays(api: Api, body: bytes, names: str) -> None:
    before = snapshot(api)
    headers = {**api.bearer(), "content-type": "application/json"}
    assert_invalid(api.client.post(ADVANCE, content=body, headers=headers), names)
    assert snapshot(api) == before


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_body_not_labelled_json_says_so(api: Api, content_type: str) -> None:
    # What `curl -d '{"seconds": 60}'` sends: JSON, labelled a form.
    before = snapshot(api)
    headers = {**api.bearer(), "content-type": content_type}
    r = api.client.post(ADVANCE, content=b'{"seconds": 60}', headers=headers)
    assert_invalid(r, "body: expected JSON, sent with Content-Type: application/json")
    assert snapshot(api) == before
    headers["content-type"] = "application/json; charset=utf-8"
    assert api.client.post(ADVANCE, content=b'{"seconds": 60}', headers=headers).status_code == 200


def test_on_the_system_clock_the_answer_says_how_to_get_a_manual_one(api: Api) -> None:
    api.engine.manual_clock = None
    r = api.client.post(ADVANCE, json={"seconds": 60}, headers=api.bearer())
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    assert "--clock manual" in r.json()["message"]


def test_an_oversize_body_is_a_413_before_it_is_read(api: Api) -> None:
    before = snapshot(api)
    padded = b'{"seconds": 60, "pad": "' + b"x" * 1_000_000 + b'"}'
    headers = {**api.bearer(), "content-type": "application/json"}
    r = api.client.post(ADVANCE, content=padded, headers=headers)
    assert (r.status_code, r.json()["code"]) == (413, "too_large")
    assert "1000000 bytes" in r.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"seconds": 60, "pad": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'"}'

    r = api.client.post(ADVANCE, content=chunks(), headers=headers)
    assert (r.status_code, r.json()["code"]) == (413, "too_large")
    assert snapshot(api) == before
    r = api.client.post(ADVANCE, content=b'{"seconds": 60}', headers=headers)
    assert r.status_code == 200


def test_the_wrong_method_is_a_json_405(api: Api) -> None:
    r = api.client.get(ADVANCE, headers=api.bearer())
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")


@pytest.mark.parametrize(
    "declared",
    [
        b"9" * 5000,  # `int` refuses past 4,300 digits: the check itself raised, a 500
        "\u00b2".encode(),  # not a length: the body is counted as it arrives
        "\u0663".encode(),
    ],
)
def test_a_hostile_content_length_is_answered_cleanly(api: Api, declared: bytes) -> None:
    headers = {**api.bearer(), "content-type": "application/json", "content-length": declared}
    r = api.client.post(ADVANCE, content=b'{"seconds": 60}', headers=headers)
    if declared.isdigit():
        assert (r.status_code, r.json()["code"]) == (413, "too_large")
    else:
        assert r.status_code == 200, r.text
