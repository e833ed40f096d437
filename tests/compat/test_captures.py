"""Every request captured from the real clients (fixtures/client-captures.json, copied
from clients.md's research) replayed raw against the engine, twice.

Raw = the captured method, path, headers (Content-Type, Content-Encoding, Origin, ...) and
body text.  Three rewrites only, done on the JSON text so its formatting stays as captured:
the write key (Authorization header and `writeKey` fields) becomes this test's key; the ids
(messageId, userId, anonymousId, previousId, groupId) get this test's prefix, since
messageIds are unique per workspace forever and several captures share them; and bodies
captured decoded with `Content-Encoding: gzip` are gzipped again.

Contract: exactly 200 with a JSON body, CORS headers when there is an Origin; the second
replay adds nothing (log length unchanged, one stored event per messageId).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import Engine

CAPTURES = json.loads(
    (Path(__file__).resolve().parent / "fixtures" / "client-captures.json").read_text()
)
ID_FIELDS = ("messageId", "userId", "anonymousId", "previousId", "groupId")
NOT_REPLAYED = {"host", "content-length", "connection"}  # set by the HTTP client
SHORT = {
    "segment-analytics-python 2.4.0": "segment-py",
    "rudder-sdk-python 2.1.9": "rudder-py",
    "@segment/analytics-node 3.1.0": "node",
    "@segment/analytics-next 1.84.3 (standard delivery, cross-origin page)": "browser",
    "@segment/analytics-next 1.84.3 (deliveryStrategy batching)": "browser-batching",
    "@segment/snippet 5.2.1 + analytics-next standalone bundle (same-origin, settings served locally)": "snippet",
    "snowplow-tracker 1.1.0": "snowplow",
}
UNSUPPORTED = {"snowplow-tracker 1.1.0": "Snowplow tp2 is not supported in v1 (clients.md §4)"}


def _cases() -> list[Any]:
    out = []
    for client, requests in CAPTURES.items():
        if client == "about":
            continue
        for i, req in enumerate(requests):
            marks = []
            if client in UNSUPPORTED:
                marks.append(pytest.mark.xfail(reason=UNSUPPORTED[client], strict=True))
            out.append(
                pytest.param(
                    client,
                    i,
                    id=f"{SHORT.get(client, client)}-{i}-{req['method']}-{req['path']}",
                    marks=marks,
                )
            )
    return out


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def send(engine: Engine, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body or method == "POST":
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def _messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    batch = payload.get("batch")
    return list(batch) if isinstance(batch, list) else [payload]


def _literal(value: str) -> str:
    return json.dumps(value)


def rewrite(req: dict[str, Any], write_key: str, prefix: str) -> tuple[dict[str, str], bytes]:
    text: str = req["body"]
    headers = {k: v for k, v in req["headers"].items() if k.lower() not in NOT_REPLAYED}
    for name, value in list(headers.items()):
        if name.lower() == "authorization" and value.lower().startswith("basic "):
            headers[name] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    if text:
        payload = json.loads(text)
        keys = {m.get("writeKey") for m in [payload, *_messages(payload)]} - {None}
        ids = {m.get(f) for m in _messages(payload) for f in ID_FIELDS} - {None}
        for old in keys:
            text = text.replace(_literal(old), _literal(write_key))
        for old in sorted(ids, key=len, reverse=True):
            text = text.replace(_literal(old), _literal(prefix + old))
    body = text.encode()
    encoding = next((v for k, v in headers.items() if k.lower() == "content-encoding"), "")
    if encoding.lower() == "gzip":
        body = gzip.compress(body)
    return headers, body


def _stored(engine: Engine, message: dict[str, Any]) -> list[dict[str, Any]]:
    """The stored events of the message's profile with its messageId."""
    profile = None
    if message.get("userId"):
        profile = engine.lookup("user_id", message["userId"])
    if profile is None and message.get("anonymousId"):
        profile = engine.lookup("anonymous_id", message["anonymousId"])
    assert profile is not None, f"no profile for {message.get('type')} {message.get('messageId')}"
    return [e for e in engine.events(profile["id"]) if e["messageId"] == message["messageId"]]


def _check_cors(reply: Reply, origin: str | None) -> None:
    if origin is None:
        return
    assert reply.headers.get("access-control-allow-origin") in (origin, "*"), reply.headers
    exposed = reply.headers.get("access-control-expose-headers", "").lower()
    assert "retry-after" in exposed, reply.headers


@pytest.mark.parametrize(("client", "index"), _cases())
def test_replay_twice(engine: Engine, write_key: str, prefix: str, client: str, index: int) -> None:
    req = CAPTURES[client][index]
    headers, body = rewrite(req, write_key, prefix)
    origin = next((v for k, v in headers.items() if k.lower() == "origin"), None)

    if req["method"] == "OPTIONS":
        for _ in range(2):
            reply = send(engine, "OPTIONS", req["path"], headers, b"")
            assert reply.status in (200, 204), (reply.status, reply.body)
            assert reply.headers.get("access-control-allow-origin") in (origin, "*"), reply.headers
            methods = reply.headers.get("access-control-allow-methods", "").upper()
            assert "POST" in methods, reply.headers
            allowed = reply.headers.get("access-control-allow-headers", "").lower()
            wanted = headers.get("Access-Control-Request-Headers", "").lower()
            for name in filter(None, (h.strip() for h in wanted.split(","))):
                assert name in allowed or allowed == "*", (name, reply.headers)
        return

    gzipped = body[:2] == b"\x1f\x8b"
    messages = _messages(json.loads(gzip.decompress(body) if gzipped else body))
    engine.wait_processed()
    before = engine.status()["log_length"]
    after_first = None
    for attempt in (1, 2):
        reply = send(engine, req["method"], req["path"], headers, body)
        assert reply.status == 200, (attempt, reply.status, reply.body)
        assert reply.headers.get("content-type", "").startswith("application/json"), reply.headers
        assert isinstance(reply.json(), dict), reply.body
        _check_cors(reply, origin)
        engine.wait_processed()
        length = engine.status()["log_length"]
        if after_first is None:
            # >=, not ==: see test_log_length_counts_stored_events
            assert length - before >= len(messages), (length, before, len(messages))
            after_first = length
        else:
            assert length == after_first, "the replay grew the log"

    for message in messages:
        stored = _stored(engine, message)
        assert len(stored) == 1, (message["messageId"], stored)
        assert stored[0]["type"] == message["type"]


def test_metrics_endpoint(engine: Engine, write_key: str) -> None:
    """analytics-next posts client metrics to /v1/m (text/plain, cross-origin): 200, discarded."""
    body = json.dumps(
        {
            "series": [
                {
                    "type": "Counter",
                    "metric": "analytics_js.invoke.track",
                    "value": 1,
                    "tags": {"library": "analytics.js", "library_version": "npm:next-1.84.3"},
                }
            ]
        }
    ).encode()
    origin = "http://127.0.0.1:18090"
    before = engine.status()["log_length"]
    reply = send(
        engine,
        "POST",
        "/v1/m",
        {
            "Content-Type": "text/plain",
            "Origin": origin,
            "Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode(),
        },
        body,
    )
    assert reply.status == 200, (reply.status, reply.body)
    assert isinstance(reply.json(), dict)
    _check_cors(reply, origin)
    engine.wait_processed()
    assert engine.status()["log_length"] == before


def test_log_length_counts_stored_events(engine: Engine, write_key: str, prefix: str) -> None:
    """`log_length` in /api/v1/status is the number of stored events: duplicates rejected
    by the messageId index must not count, even once later events are stored."""
    batch = CAPTURES["segment-analytics-python 2.4.0"][0]
    single = CAPTURES["@segment/analytics-node 3.1.0"][0]
    engine.wait_processed()
    before = engine.status()["log_length"]
    headers, body = rewrite(batch, write_key, prefix)
    for _ in range(2):
        assert send(engine, "POST", batch["path"], headers, body).status == 200
    headers, body = rewrite(single, write_key, prefix + "later-")
    assert send(engine, "POST", single["path"], headers, body).status == 200
    engine.wait_processed()
    expected = len(_messages(json.loads(batch["body"]))) + len(
        _messages(json.loads(single["body"]))
    )
    assert engine.status()["log_length"] - before == expected
