"""`GET /api/v1/profiles/{id}/score-ledger` for the seed lead: every line, in order, with its
rule, points, running sub-scores, stage and reason, tied to the event that caused it; pages."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from leadloop.storage import workspaces
from tests.contract.conftest import Harness
from tests.contract.test_scoring_pipeline import score, seed_lead

SEED_LEDGER = [
    # (kind, rule, points, fit, engagement, total, stage, reason, event that caused it)
    ("fit", "senior_title", 15, 15, 0, 15, "lead",
     "fit rule senior_title holds (title='VP Marketing')", "identify"),
    ("stage", None, 0, 15, 0, 15, "lead", "subscriber → lead (threshold)", "identify"),
    ("fit", "company_200_plus", 10, 25, 0, 25, "lead",
     "fit rule company_200_plus holds (employees=500)", "group"),
    ("engagement", "home_page", 2, 25, 2, 27, "lead", "home_page: page /", "page"),
    ("engagement", "pricing_page", 10, 25, 12, 37, "lead", "pricing_page: page /pricing", "page"),
    ("engagement", "lead_magnet", 15, 25, 27, 52, "MQL",
     "lead_magnet: track 'Lead Magnet Downloaded'", "track"),
    ("stage", None, 0, 25, 27, 52, "MQL", "lead → MQL (threshold)", "track"),
]  # fmt: skip


def test_score_ledger_of_the_seed_lead(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h)
    pid = h.profile("user_id", "vp-1")["id"]  # type: ignore[index]
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "t", h.engine.clock.now())
    ).result()
    event_types = dict(h.sql("SELECT message_id, type FROM events"))
    version = score(h)["model_version"]

    with TestClient(h.engine.asgi()) as client:

        def get(query: str = "", profile: str = pid) -> Any:
            r = client.get(
                f"/api/v1/profiles/{profile}/score-ledger{query}",
                headers={"Authorization": f"Bearer {token}"},
            )
            return r.status_code, r.json()

        status, body = get()
        assert status == 200 and body["profile_id"] == pid and body["next_after"] is None
        entries = body["entries"]
        assert [
            (
                e["kind"], e["rule"], e["points"], e["fit"], e["engagement"], e["total"],
                e["stage"], e["reason"], event_types[e["message_id"]],
            )
            for e in entries
        ] == SEED_LEDGER  # fmt: skip
        assert {(e["model"], e["model_version"], e["at"]) for e in entries} == {
            ("lead", version, h.engine.clock.now())
        }
        assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)

        # Pages of 3: each ends with the cursor of its last line, the last page with none.
        pages, after = [], 0
        while True:
            status, page = get(f"?limit=3&after={after}")
            assert status == 200
            pages.append(page["entries"])
            after = page["next_after"]
            if after is None:
                break
            assert after == page["entries"][-1]["id"]
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [e for p in pages for e in p] == entries

        assert get("?model=lead")[1]["entries"] == entries
        assert get("?model=other")[1]["entries"] == []
        assert get(profile="no-such-profile")[0] == 404
        assert get("?limit=0")[0] == 400
