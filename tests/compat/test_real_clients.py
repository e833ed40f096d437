"""The canonical scenario (clients.md §7) driven by each unmodified client library, then
checked on the stored state through the admin API — not on HTTP logs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.compat.conftest import (
    JS,
    Engine,
    python_driver,
    require_js_packages,
    require_tool,
    run_driver,
)

FIXED_TS = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
SERVER_SIDE = Counter(identify=1, track=2, page=1, screen=1, group=1, alias=1)
EXPECTED_COUNTS = {
    "segment_py": SERVER_SIDE,
    "rudder_py": SERVER_SIDE,
    "node": SERVER_SIDE,
    "browser": Counter(identify=1, track=1, page=1, group=1, alias=1),  # no screen call
}
EXPECTED_LIBRARY = {
    "segment_py": ("analytics-python", "2.4.0"),
    "rudder_py": ("analytics-python", "2.1.9"),
    "node": ("@segment/analytics-node", "3.1.0"),
    "browser": ("analytics.js", "next-1.84.3"),
}
BROWSER_PATHS = ("/v1/i", "/v1/t", "/v1/p", "/v1/g", "/v1/a")


def _drive(client: str, engine: Engine, wk: str, prefix: str, tmp: Path, page: str) -> None:
    if client in ("segment_py", "rudder_py"):
        run_driver([*python_driver(client), engine.base, wk, prefix], cwd=tmp)
    elif client == "node":
        require_js_packages()
        node = require_tool("node")
        run_driver([node, str(JS / "drive_node.js"), engine.base, wk, prefix], cwd=tmp)
    else:
        _drive_browser(engine, wk, prefix, tmp, page)


def _drive_browser(engine: Engine, wk: str, prefix: str, tmp: Path, page: str) -> None:
    chromium = require_tool("chromium", "CHROMIUM")
    require_js_packages()
    node = require_tool("node")
    query = urlencode({"api": f"127.0.0.1:{engine.port}", "wk": wk, "prefix": prefix})
    proc = run_driver(
        [node, str(JS / "drive_browser.js"), f"{page}/index.html?{query}"],
        cwd=tmp,
        env={"CHROMIUM": chromium},
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    api = [r for r in summary["requests"] if r["url"].startswith(engine.base + "/")]
    seen = {(r["method"], r["url"][len(engine.base) :]): r["status"] for r in api}
    for path in BROWSER_PATHS:
        # The Authorization header makes every cross-origin call preflighted.
        assert seen.get(("OPTIONS", path)) in (200, 204), (path, api)
        assert seen.get(("POST", path)) == 200, (path, api)
    assert not [r for r in api if r["url"].endswith("/v1/m")], "metrics were not disabled"


def _one(items: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    hits = [e for e in items if all(e.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, hits)
    return hits[0]


@pytest.mark.parametrize("client", ["segment_py", "rudder_py", "node", "browser"])
def test_scenario(
    engine: Engine, write_key: str, prefix: str, client: str, tmp_path: Path, request: Any
) -> None:
    page = request.getfixturevalue("page_server") if client == "browser" else ""
    _drive(client, engine, write_key, prefix, tmp_path, page)

    uid, anon, group = prefix + "user-42", prefix + "anon-7f3a", prefix + "acme-inc"
    prof = engine.profile(uid)
    # identify traits (rudder sends them only in context.traits)
    assert {k: prof["traits"].get(k) for k in ("email", "name", "plan")} == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "plan": "pro",
    }, prof["traits"]
    # alias: the previous id is now an identity of the same profile
    assert {"type": "anonymous_id", "value": anon} in prof["identities"], prof["identities"]
    assert {"type": "user_id", "value": uid} in prof["identities"], prof["identities"]
    via_anon = engine.lookup("anonymous_id", anon)
    assert via_anon is not None and via_anon["id"] == prof["id"]

    events = engine.events(prof["id"])
    assert Counter(e["type"] for e in events) == EXPECTED_COUNTS[client], [
        (e["type"], e["event"], e["messageId"]) for e in events
    ]
    ids = [e["messageId"] for e in events]
    assert len(ids) == len(set(ids)), f"duplicate messageIds stored: {ids}"
    counts = prof["event_counts"]
    for type_, n in EXPECTED_COUNTS[client].items():
        assert counts.get(type_) == n, (type_, counts)
    assert counts.get("track:Order Completed") == 1, counts

    order = _one(events, type="track", event="Order Completed")
    assert order["properties"]["revenue"] == 42.5
    assert order["properties"]["order_id"] == "o-1001"
    assert order["userId"] == uid

    account = engine.account(group)
    assert account is not None, f"no account {group}"
    assert account["traits"].get("employees") == 120, account
    assert account["traits"].get("name") == "Acme Inc", account
    assert prof["id"] in account["profiles"], account
    assert group in prof["accounts"], prof["accounts"]

    name, version = EXPECTED_LIBRARY[client]
    for e in events:
        library = (e["context"] or {}).get("library") or {}
        assert (library.get("name"), library.get("version")) == (name, version), e

    if client == "browser":
        page_event = _one(events, type="page")
        assert page_event["properties"].get("path") == "/docs/start"
        assert all(e["anonymousId"] for e in events if e["type"] != "alias")
    else:
        fixed = _one(events, messageId=prefix + "fixed-msg-id-1")
        assert (fixed["type"], fixed["event"]) == ("track", "Signup Started")
        assert fixed["anonymousId"] == anon
        # receivedAt - (sentAt - timestamp): the 2024 time survives, up to the network delay
        assert abs(fixed["timestamp"] - FIXED_TS) < 5, fixed["timestamp"] - FIXED_TS
        assert fixed["context"].get("ip") == "203.0.113.9"
