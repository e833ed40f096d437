"""`GET /api/v1/profiles?model=…`: the live profiles of one scoring model, filtered by stage
and score as of the time asked, in id order, in pages; merged profiles are not listed, and a
bad filter is a 400 or 404 that names what is wrong."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from leadloop.scoring import queries as score_queries
from leadloop.storage import workspaces
from tests.contract.conftest import Harness
from tests.contract.test_scoring_pipeline import seed_lead

DAY = 86400.0


def _people(h: Harness) -> None:
    """vp-1: 52, MQL. eng-1: 2, subscriber. mid-1: 15 (a senior title), lead. Two profiles
    that merge into one (user m-1 and the browser a-9 it logs in from)."""
    seed_lead(h)
    h.send({"type": "identify", "userId": "eng-1", "traits": {"title": "Engineer"}})
    h.send({"type": "page", "userId": "eng-1", "properties": {"path": "/"}})
    h.send({"type": "identify", "userId": "mid-1", "traits": {"title": "Director"}})
    h.send({"type": "page", "anonymousId": "a-9", "properties": {"path": "/pricing"}})
    h.settle()
    h.send({"type": "identify", "userId": "m-1", "traits": {"email": "m1@x.test"}})
    h.settle()
    h.send({"type": "identify", "userId": "m-1", "anonymousId": "a-9"})
    h.settle()


def _client_get(h: Harness, client: TestClient, token: str) -> Any:
    def get(query: str) -> tuple[int, Any]:
        r = client.get(f"/api/v1/profiles{query}", headers={"Authorization": f"Bearer {token}"})
        return r.status_code, r.json()

    return get


def _token(h: Harness) -> str:
    return h.engine.writer.submit(  # type: ignore[no-any-return]
        lambda c: workspaces.create_admin_token(c, "default", "t", h.engine.clock.now())
    ).result()


def test_lists_profiles_by_stage_and_score(scoring_harness: Harness) -> None:
    h = scoring_harness
    _people(h)
    ids = {u: h.profile("user_id", u)["id"] for u in ("vp-1", "eng-1", "mid-1", "m-1")}  # type: ignore[index]
    merged = [r[0] for r in h.sql("SELECT id FROM profiles WHERE merged_into IS NOT NULL")]
    assert len(merged) == 1, "the login merged the browser's profile into m-1's"
    with TestClient(h.engine.asgi()) as client:
        get = _client_get(h, client, _token(h))

        status, body = get("?model=lead")
        assert status == 200 and body["model"] == "lead" and body["next_after"] is None
        listed = body["profiles"]
        in_id_order = [  # the database's order of text (PostgreSQL's may be a locale's)
            r[0] for r in h.sql("SELECT profile_id FROM scores ORDER BY profile_id")
        ]
        # A merge deletes the merged profile's scores with it: the list relies on that.
        assert merged[0] not in in_id_order
        live = [i for i in in_id_order if i in ids.values()]
        assert [p["id"] for p in listed] == live
        for p in listed:  # each item is the profile's own view of that score
            user = next(u for u, i in ids.items() if i == p["id"])
            own = h.profile("user_id", user)["scores"]["lead"]  # type: ignore[index]
            assert {k: p[k] for k in ("score", "fit", "engagement", "stage")} == {
                k: own[k] for k in ("score", "fit", "engagement", "stage")
            }
        by_user = {u: next(p for p in listed if p["id"] == i) for u, i in ids.items()}
        assert (by_user["vp-1"]["score"], by_user["vp-1"]["stage"]) == (52, "MQL")
        assert (by_user["eng-1"]["score"], by_user["eng-1"]["stage"]) == (2, "subscriber")
        assert (by_user["mid-1"]["score"], by_user["mid-1"]["stage"]) == (15, "lead")
        # The merged person: the browser's pricing visit counts (10) on the survivor.
        assert by_user["m-1"]["score"] == 10
        assert by_user["m-1"]["identities"] == [
            {"type": "email", "value": "m1@x.test"},
            {"type": "user_id", "value": "m-1"},
        ], "reached by email and user id; anonymous ids are left to the profile's view"

        def users(query: str) -> list[str]:
            status, body = get(query)
            assert status == 200, body
            return sorted(u for u, i in ids.items() if i in {p["id"] for p in body["profiles"]})

        assert users("?model=lead&stage=MQL") == ["vp-1"]
        assert users("?model=lead&stage=mql,%20Lead") == ["m-1", "mid-1", "vp-1"]
        assert users("?model=lead&min_score=50") == ["vp-1"]
        assert users("?model=lead&min_score=10&max_score=15") == ["m-1", "mid-1"]
        assert users("?model=lead&max_score=-1") == []
        assert users("?model=lead&min_score=-5.5&max_score=2") == ["eng-1"]

        # 31 days later: decay took 20 from vp-1's engagement; its stage stays MQL.
        h.advance(31 * DAY)
        assert users("?model=lead&min_score=50") == []
        assert users("?model=lead&stage=MQL&min_score=32&max_score=32") == ["vp-1"]

        # Pages of one, each ending with the cursor of its last profile.
        pages, after = [], ""
        while True:
            status, page = get(f"?model=lead&limit=1&after={after}")
            assert status == 200
            pages.append([p["id"] for p in page["profiles"]])
            if page["next_after"] is None:
                break
            after = page["next_after"]
            assert after == page["profiles"][-1]["id"]
        assert [i for p in pages for i in p] == live


def test_a_page_reads_a_bounded_number_of_rows(scoring_harness: Harness) -> None:
    """A filter few profiles pass is not a scan of the whole table per request: a page reads
    at most `scan` rows and may come back short or empty, with a cursor to go on from."""
    h = scoring_harness
    _people(h)
    vp = h.profile("user_id", "vp-1")["id"]  # type: ignore[index]
    where = score_queries.ScoreFilter(frozenset({"mql"}))
    now = h.engine.clock.now()
    found: list[str] = []
    pages, after = 0, ""
    while True:
        items, nxt = h.engine.read_sync(
            lambda c, a=after: score_queries.scored_profiles(
                c, "default", "lead", where, a, 100, now, scan=2
            )
        )
        pages += 1
        found += [i["id"] for i in items]
        assert len(items) <= 2
        if nxt is None:
            break
        assert nxt != after
        after = nxt
    assert found == [vp]
    assert pages == 2, "four profiles read two at a time: the second page says it is the last"


def test_bad_filters_are_refused_and_name_the_problem(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h)
    with TestClient(h.engine.asgi()) as client:
        get = _client_get(h, client, _token(h))
        status, body = get("")
        assert status == 400 and body["message"].startswith("query.model"), body
        status, body = get("?model=nope")
        assert status == 404 and "'nope'" in body["message"] and "lead" in body["message"], body
        status, body = get("?model=lead&stage=MLQ")
        assert status == 400 and "'MLQ'" in body["message"] and "MQL" in body["message"], body
        status, body = get("?model=lead&stage=MQL,")
        assert status == 400 and "query.stage" in body["message"], body
        for bad in ("min_score=abc", "min_score=1e3", "max_score=%2B5", "min_score=--1"):
            status, body = get(f"?model=lead&{bad}")
            assert status == 400 and body["message"].startswith("query."), (bad, body)
        status, body = get("?model=lead&min_score=60&max_score=50")
        assert status == 400 and "max_score" in body["message"], body
        status, body = get("?model=lead&sort=score")
        assert status == 400 and "not a parameter" in body["message"], body
        status, body = get("?model=lead&limit=1001")
        assert status == 400, body
        r = client.get("/api/v1/profiles?model=lead")
        assert r.status_code == 401
