"""The admin API's HTTP contract beyond each route's data, through the real ASGI app and engine:
the types of `GET /api/v1/status`, the errors the OpenAPI document lists, and HEAD."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadloop.channels import records
from leadloop.channels.records import MessageRecord
from leadloop.channels.service import services
from leadloop.channels.tracking import Token, sign
from tests.integration.conftest import Api
from tests.integration.test_api_hostile import every_get_route, seed


def test_status_positions_are_numbers_on_every_backend(any_api: Api) -> None:
    """`processor_position` was the cursor as stored (`"6"`, or `"txid:seq"` on PostgreSQL)
    beside the numbers `log_length` and `lag`; it is the `seq` of the last processed event."""
    api = any_api
    status = api.client.get("/api/v1/status", headers=api.bearer()).json()
    assert (status["log_length"], status["processor_position"], status["lag"]) == (0, 0, 0)
    batch = [{"type": "track", "userId": "u1", "event": f"E{i}"} for i in range(3)]
    r = api.client.post("/v1/batch", content=json.dumps({"batch": batch}), headers=api.basic())
    assert r.status_code == 200
    api.settle()
    status = api.client.get("/api/v1/status", headers=api.bearer()).json()
    for key in ("log_length", "processor_position", "lag", "writer_pending"):
        assert type(status[key]) is int, (key, status)
    last = api.engine.read_sync(lambda c: c.execute("SELECT MAX(seq) FROM events"))[0][0]
    assert (status["log_length"], status["processor_position"], status["lag"]) == (3, last, 0)


# -- the OpenAPI document ---------------------------------------------------------------------


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    name = str(ref).removeprefix("#/components/schemas/")
    return dict(spec["components"]["schemas"][name])


def conforms(body: Any, schema: dict[str, Any]) -> bool:
    """The JSON Schema keywords an error body's schema uses: an object, its required keys, no
    key it does not name, and string values."""
    properties = schema["properties"]
    return (
        schema["type"] == "object"
        and isinstance(body, dict)
        and set(schema["required"]) <= set(body) <= set(properties)
        and all(properties[key]["type"] == "string" and isinstance(body[key], str) for key in body)
    )


def test_the_openapi_document_lists_the_400_the_api_answers_and_no_422(api: Api) -> None:
    """FastAPI listed a 422 with its own error list (`HTTPValidationError`) on every route with
    parameters; the API never answers 422, it answers 400 `invalid_request`."""
    spec = api.client.get("/api/v1/openapi.json").json()
    operations = {
        (method.upper(), path): operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }
    assert len(operations) >= 14 and ("POST", "/api/v1/clock/advance") in operations
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])
    schemas = set()
    for route, operation in operations.items():
        responses = operation["responses"]
        assert "422" not in responses, route
        # Every admin route may answer 400: an unknown query parameter is one on any of them.
        content = responses["400"]["content"]["application/json"]
        schemas.add(json.dumps(resolve(spec, content["schema"]), sort_keys=True))
    assert len(schemas) == 1
    schema = json.loads(schemas.pop())
    assert set(schema["required"]) == {"code", "message"}

    bad = [
        api.client.get("/api/v1/outbox?limit=0", headers=api.bearer()),
        api.client.get("/api/v1/status?verbose=1", headers=api.bearer()),
        api.client.get("/api/v1/profiles/a%00b", headers=api.bearer()),
        api.client.post("/api/v1/clock/advance", json={"seconds": "1"}, headers=api.bearer()),
        api.client.post("/api/v1/clock/advance", content=b"{", headers=api.bearer()),
    ]
    for r in bad:
        assert r.status_code == 400, (r.request.url, r.text)
        assert conforms(r.json(), schema), r.text
        assert r.json()["code"] == "invalid_request"
    assert not conforms({"detail": [{"loc": ["query"], "msg": "x"}]}, schema)


# -- HEAD -------------------------------------------------------------------------------------


class Recording:
    """The app, keeping the ASGI messages it sends: what the server would put on the wire."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.sent: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def record(message: Message) -> None:
            self.sent.append(message)
            await send(message)

        await self.app(scope, receive, record)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@pytest.fixture
def wire(api: Api) -> Iterator[tuple[Callable[..., Answer], str]]:
    """`ask(method, path, token=True)`: the status, headers and body bytes the app sent, and a
    seeded profile's id."""
    pid = seed(api)
    recording = Recording(api.engine.asgi())

    def ask(method: str, path: str, token: bool = True) -> Answer:
        recording.sent.clear()
        client.request(method, path, headers=api.bearer() if token else {})
        start, *rest = recording.sent
        return start["status"], list(start["headers"]), b"".join(m["body"] for m in rest)

    with TestClient(recording) as client:
        yield ask, pid


def test_head_is_answered_as_get_without_the_body(
    wire: tuple[Callable[..., Answer], str],
) -> None:
    """The FastAPI routes answered HEAD 405; the Starlette ones (`/healthz`, the docs) 200."""
    ask, pid = wire
    routes = [
        *every_get_route(pid),
        "/api/v1/profiles/nobody",
        "/api/v1/outbox?kind=messages",
        "/api/v1/clock/advance",
        "/healthz",
        "/api/v1/openapi.json",
        "/api/v1/docs",
    ]
    for path in routes:
        status, headers, body = ask("GET", path)
        assert body, path
        assert ask("HEAD", path) == (status, headers, b""), path
    assert ask("HEAD", f"/api/v1/profiles/{pid}")[0] == 200
    assert ask("HEAD", "/api/v1/profiles/nobody")[0] == 404
    assert ask("HEAD", "/api/v1/outbox?kind=messages")[0] == 400
    assert ask("HEAD", "/api/v1/clock/advance")[0] == 405


def test_head_without_a_token_is_a_401_as_get_is(wire: tuple[Callable[..., Answer], str]) -> None:
    ask, pid = wire
    for path in every_get_route(pid):
        status, headers, body = ask("HEAD", path, token=False)
        assert (status, body) == (401, b""), path
        assert (b"www-authenticate", b"Bearer") in headers, path
        assert ask("GET", path, token=False)[:2] == (status, headers), path


def sent_email(api: Api) -> None:
    """The record of an email `em-1` sent to ada@example.com, which tracking tokens name."""
    now = api.engine.clock.now()
    record = MessageRecord(
        "default", "em-1", None, "email", "t", None, None, "ada@example.com", "<e@x>",
        "sent", "", now, now, now,
    )  # fmt: skip
    api.engine.writer.submit(lambda c: records.create(c, record, now)).result()


def test_head_of_an_unsubscribe_link_does_not_unsubscribe(api: Api) -> None:
    """The unsubscribe route tells its GET (the page) from its POST by the method, and HEAD went
    the POST way: a link checker's HEAD suppressed the address."""
    sent_email(api)
    link = "/t/u/" + sign(services(api.engine).keys()[0], Token("u", "default", "em-1"))

    def suppressed() -> list[Any]:
        return api.engine.read_sync(lambda c: c.execute("SELECT * FROM channel_suppressions"))

    page = api.client.get(link)
    head = api.client.head(link)
    assert (head.status_code, head.headers, head.content) == (200, page.headers, b"")
    assert "<form" in page.text and not suppressed()
    assert "You are unsubscribed" in api.client.post(link).text and suppressed()


def test_head_of_a_tracked_link_or_pixel_records_nothing(api: Api) -> None:
    """A HEAD answered as GET recorded an open or a click: link checkers and prefetchers send
    them, so they inflated opens and clicks (and set off journeys' engagement branches)."""
    sent_email(api)
    key = services(api.engine).keys()[0]
    pixel = "/t/o/" + sign(key, Token("o", "default", "em-1")) + ".gif"
    link = "/t/c/" + sign(key, Token("c", "default", "em-1", "https://example.com/guide"))

    def recorded() -> list[str]:
        # Opens and clicks reach the writer in the background: wait for them, then for the log.
        services(api.engine).hits.drain().result(timeout=10)
        api.settle()
        rows = api.engine.read_sync(lambda c: c.execute("SELECT event FROM events ORDER BY seq"))
        return [str(r[0]) for r in rows]

    head = api.client.head(pixel)
    assert (head.status_code, head.headers["content-type"], head.content) == (200, "image/gif", b"")
    head = api.client.head(link, follow_redirects=False)
    assert (head.status_code, head.headers["location"]) == (302, "https://example.com/guide")
    assert recorded() == []
    assert api.client.get(pixel).status_code == 200
    assert api.client.get(link, follow_redirects=False).status_code == 302
    assert recorded() == ["Email Opened", "Email Link Clicked"]


def test_a_405_names_the_methods_the_route_takes(api: Api) -> None:
    r = api.client.get("/api/v1/clock/advance", headers=api.bearer())
    assert (r.status_code, r.json()["code"]) == (405, "method_not_allowed")
    assert r.headers["allow"] == "POST"


def test_the_openapi_document_declares_the_admin_token_every_route_asks_for(api: Api) -> None:
    """Swagger UI's "Authorize" (which docs/api.md points to) needs a security scheme, and the
    document listed no 401 though every route answers one without the token."""
    spec = api.client.get("/api/v1/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["adminToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert operation["security"] == [{"adminToken": []}], (method, path)
            schema = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert resolve(spec, schema)["required"] == ["code", "message"]
            concrete = path.replace("{profile_id}", "p_1").replace("{id}", "1")
            concrete = concrete.replace("{account_id}", "acme").replace("{", "").replace("}", "")
            r = api.client.request(method.upper(), concrete)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.json()["code"] == "unauthorized"
