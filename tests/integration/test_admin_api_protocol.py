"""The admin API's HTTP contract beyond each route's data, through the real ASGI app and engine:
the types of `GET /api/v1/status` and the errors the OpenAPI document lists."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Api


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
