"""Generated hostile input against every route, on both backends, with the example playbook's
scoring and journeys running: no request gets a 5xx, and whatever the tracking endpoints
accept, the processor processes: an accepted event that made a stage raise would be parked
(set aside with its error) where it used to stop the whole log behind it.

The admin routes are read from the OpenAPI document, so a new route is fuzzed without a line
here. Examples are drawn deterministically (`derandomize`): CI runs the same inputs every time;
set `LEADLOOP_FUZZ_EXAMPLES` to draw more of them locally, and `LEADLOOP_FUZZ_RANDOM=1` to draw
other ones on each run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import Api, serve_api
from tests.integration.test_api_hostile import seed

EXAMPLES = int(os.environ.get("LEADLOOP_FUZZ_EXAMPLES", "150"))
PLAYBOOK = Path(__file__).resolve().parents[2] / "examples" / "playbook.yaml"
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("LEADLOOP_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values that broke parsers before, in this project or in the ones it replaces: NUL (refused
# by PostgreSQL text), digits past 64 bits and past a double, non-ASCII digits, a lone
# surrogate's escape, long text, paths and percent escapes.
HOSTILE_TEXT = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "9" * 25,
        "9" * 400,
        "-1",
        "0",
        "1e309",
        "NaN",
        "-inf",
        "٨٠",
        "１２",
        "../../etc/passwd",
        "%00",
        "%",
        "x" * 20_000,
        "2026-02-30",
        "2026-11-29T25:61:00Z",
        "0001-01-01",
        "9999-12-31T23:59:59Z",
        " ",
        "\u202e",
        "ǅ",
    ]
)
TEXT = st.one_of(HOSTILE_TEXT, st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**63, 2**64, 10**400]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)


def _dumps(value: Any) -> bytes:
    # 10**400 is a valid JSON number that Python's encoder writes as digits.
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@pytest.fixture
def fuzzed(backend_url: str) -> Iterator[Api]:
    yield from serve_api(backend_url, playbook=str(PLAYBOOK))


# Values a route expects, so that requests get past the first check as often as not.
PLAUSIBLE = {
    "type": ["user_id", "email", "anonymous_id", "phone"],
    "value": ["u1", "ada@example.com"],
    "status": ["pending", "dead", "sent", "skipped", "failed"],
    "kind": ["webhook", "message", "conversion"],
    "destination": ["meta", "google", "tiktok"],
    "model": ["lead", "default"],
    "since": ["2026-11-01", "2020-01-01T00:00:00Z"],
    "until": ["2026-11-30", "2100-01-01"],
    "after": ["0", "1"],
    "limit": ["1", "100", "1000"],
    "account_id": ["acme"],
}


def _answered(api: Api, response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        body = response.json()  # every refusal is JSON that says what was wrong
        assert body, what


# -- the admin API, route by route from its OpenAPI document ----------------------------------


def _operations(api: Api) -> list[tuple[str, str, list[dict[str, Any]], bool]]:
    document = api.client.get("/api/v1/openapi.json").json()
    return [
        (method.upper(), path, operation.get("parameters", []), "requestBody" in operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _value(draw: st.DrawFn, parameter: dict[str, Any], profile: str) -> str:
    known = [profile] if parameter["name"] == "profile_id" else PLAUSIBLE.get(parameter["name"])
    if known and draw(st.booleans()):
        return draw(st.sampled_from(known))
    kind = parameter.get("schema", {}).get("type")
    if kind in ("integer", "number") and draw(st.booleans()):
        return str(draw(NUMBER))
    return draw(TEXT)


def test_no_admin_request_is_answered_with_a_5xx(fuzzed: Api) -> None:
    api = fuzzed
    profile = seed(api)
    operations = _operations(api)
    assert len(operations) >= 10  # the document lists the routes, or this tests nothing

    @FUZZ
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        method, path, parameters, has_body = data.draw(st.sampled_from(operations))
        url, query = path, []
        for parameter in parameters:
            value = _value(data.draw, parameter, profile)
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", quote(value, safe="") or "x")
            elif data.draw(st.booleans()):
                query.append((parameter["name"], value))
        if data.draw(st.integers(0, 9)) == 0:  # a parameter the route does not take
            query.append((data.draw(TEXT) or "extra", data.draw(TEXT)))
        body = data.draw(st.one_of(JSON, st.fixed_dictionaries({"seconds": NUMBER})))
        content = _dumps(body) if has_body else None
        response = api.client.request(
            method, url, params=query, content=content, headers=api.bearer()
        )
        _answered(api, response, f"{method} {url} {query!r} {content!r}"[:500])

    fuzz()


# -- the tracking endpoints: whatever they accept is processed ---------------------------------

TYPES = ("identify", "track", "page", "screen", "group", "alias")
FIELDS = (
    "userId",
    "anonymousId",
    "traits",
    "properties",
    "event",
    "name",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "context",
    "messageId",
    "groupId",
    "previousId",
    "integrations",
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"userId": draw(st.sampled_from(["u1", "u2", "ada"]))}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        message[field] = draw(JSON)
    if draw(st.booleans()):
        # Shapes the rules read: a pricing page, the lead magnet, a title and a company size.
        message.setdefault("properties", {"path": draw(st.sampled_from(["/", "/pricing", "/x"]))})
        message.setdefault("event", "Lead Magnet Downloaded")
        message.setdefault("traits", {"title": draw(TEXT), "company_size": draw(SCALAR)})
    return message


def test_what_the_tracking_endpoints_accept_is_processed(fuzzed: Api) -> None:
    api = fuzzed
    accepted = 0

    @FUZZ
    @given(st.sampled_from([*TYPES, "batch"]), st.lists(messages(), min_size=1, max_size=3))
    def fuzz(route: str, batch: list[dict[str, Any]]) -> None:
        nonlocal accepted
        body: Any = {"batch": [{"type": m.pop("type", "track"), **m} for m in batch]}
        if route != "batch":
            body = batch[0]
        response = api.client.post(f"/v1/{route}", content=_dumps(body), headers=api.basic())
        _answered(api, response, f"/v1/{route} {body!r}"[:500])
        accepted += response.status_code == 200

    fuzz()
    assert accepted > 0  # the generator also makes messages that pass, or nothing is processed
    # Every accepted event is processed: a stage that raised on one would leave a lag for ever.
    api.settle()
    # ... or, since a failing event is set aside rather than blocking, a parked event.
    assert api.engine.read_sync(lambda c: c.execute("SELECT * FROM parked_events")) == []
