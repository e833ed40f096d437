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


def test_windows_at_the_ends_of_the_calendar_are_read_or_refused_not_a_crash(api: Api) -> None:
    def get(**params: str) -> tuple[int, dict[str, object]]:
        r = api.client.get("/api/v1/metrics", params=params, headers=api.bearer())
        return r.status_code, r.json()

    # The 30 days from the last day there is end with that day, not past year 9999.
    for since in ("9999-12-31", "253402300799"):
        status, body = get(since=since)
        assert status == 200 and body["until"] == 253402300800 - 0.001, body
    # And the 30 days to the first day there is start with it: the answer's `since` was before
    # 1970, a bound the same endpoint refuses when it is sent back.
    for until in ("1970-01-01", "100"):
        status, body = get(until=until)
        assert status == 200 and body["since"] == 0, body
        assert get(since=str(body["since"]), until=until)[0] == 200
    # A zone that moves a date past either end is refused as the epoch seconds are.
    for params in (
        {"until": "9999-12-31T23:59:59-05:00"},
        {"since": "0001-01-01T00:30:00+01:00", "until": "0001-01-02"},
        {"since": "1969-12-31"},
    ):
        status, body = get(**params)
        assert status == 400 and "year 9999" in str(body["message"]), (params, body)


def test_a_compact_date_is_a_date_not_seconds_in_1970(api: Api) -> None:
    """`since=20261101` was read as epoch seconds (August 1970) and the answer was silently
    about another window."""
    compact = api.client.get(
        "/api/v1/metrics", params={"since": "20261101", "until": "20261130"}, headers=api.bearer()
    )
    dashed = api.client.get(
        "/api/v1/metrics",
        params={"since": "2026-11-01", "until": "2026-11-30"},
        headers=api.bearer(),
    )
    assert compact.status_code == dashed.status_code == 200, compact.text
    assert (compact.json()["since"], compact.json()["until"]) == (
        dashed.json()["since"],
        dashed.json()["until"],
    )
    bad = api.client.get("/api/v1/metrics", params={"since": "20261301"}, headers=api.bearer())
    assert bad.status_code == 400 and "expected a date" in bad.json()["message"]
