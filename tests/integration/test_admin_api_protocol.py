"""The admin API's HTTP contract beyond each route's data, through the real ASGI app and engine:
the types of `GET /api/v1/status`."""

from __future__ import annotations

import json

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
