"""The dashboard page: served without a token (it holds no data), with headers that keep it
from being framed or cached, and scripts that write data only as text."""

from __future__ import annotations

from tests.integration.conftest import Api


def test_the_page_loads_without_a_token_and_fetches_metrics_with_one(api: Api) -> None:
    r = api.client.get("/dashboard")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "connect-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    page = r.text
    assert 'fetch("/api/v1/metrics?' in page and '"Bearer " + token' in page
    # Template names, journey ids and currencies come from playbooks and events: never as HTML.
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page
    assert "http://" not in page and "https://" not in page  # nothing from other sites
    assert api.client.head("/dashboard").status_code == 200
    assert api.client.post("/dashboard").status_code == 405


def test_metrics_need_the_token_the_page_asks_for(api: Api) -> None:
    order = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 30}}
    assert api.client.post("/v1/track", json=order, headers=api.basic()).status_code == 200
    api.settle()
    assert api.client.get("/api/v1/metrics").status_code == 401
    r = api.client.get("/api/v1/metrics", headers=api.bearer())
    assert r.status_code == 200 and set(r.json()) == {
        "since",
        "until",
        "messages",
        "journeys",
        "funnel",
        "revenue",
        "acquisition",
    }
    assert [(x["currency"], x["revenue"]) for x in r.json()["revenue"]] == [("XXX", 30.0)]
    # Another workspace's token sees only its own figures (none).
    other = api.client.get("/api/v1/metrics", headers=api.bearer(api.other_token)).json()
    assert other["journeys"] == [] and other["revenue"] == []
