"""The /dashboard page in real headless Chromium against a real server: it asks for the admin
token, fetches the metrics with it, and shows the figures the API reports."""

from __future__ import annotations

import json
import urllib.request
from base64 import b64encode
from pathlib import Path

from tests.compat.conftest import JS, Engine, require_js_packages, require_tool, run_driver


def test_the_dashboard_shows_the_revenue_the_api_reports(
    engine: Engine, write_key: str, prefix: str, tmp_path: Path
) -> None:
    chromium = require_tool("chromium", "CHROMIUM")
    require_js_packages()
    node = require_tool("node")
    orders = [
        {"type": "track", "userId": prefix + "a", "event": "Order Completed",
         "properties": {"revenue": 120, "currency": "SEK"}},
        {"type": "track", "userId": prefix + "b", "event": "Order Completed",
         "properties": {"total": "30.5", "currency": "SEK"}},
    ]  # fmt: skip
    request = urllib.request.Request(
        engine.base + "/v1/batch",
        data=json.dumps({"batch": orders}).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + b64encode(f"{write_key}:".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    engine.wait_processed()
    expected = [r for r in engine.get("/api/v1/metrics")["revenue"] if r["currency"] == "SEK"]
    assert [(r["orders"], r["revenue"]) for r in expected] == [(2, 150.5)]

    proc = run_driver(
        [node, str(JS / "drive_dashboard.js"), engine.base, engine.server.admin_token],
        cwd=tmp_path,
        env={"CHROMIUM": chromium},
    )
    shown = json.loads(proc.stdout.strip().splitlines()[-1])
    assert shown["error"] == "" and shown["problems"] == []
    header, *rows = shown["tables"]["revenue"]
    assert header == ["currency", "orders", "revenue", "customers", "revenue per customer"]
    assert ["SEK", "2", "150.50", "2", "75.25"] in rows

    # A wrong token is said on the page, and shows no figures.
    proc = run_driver(
        [node, str(JS / "drive_dashboard.js"), engine.base, "lla_not-a-token"],
        cwd=tmp_path,
        env={"CHROMIUM": chromium},
    )
    shown = json.loads(proc.stdout.strip().splitlines()[-1])
    assert shown["error"] == "unknown admin token" and shown["tables"]["revenue"] == []
