"""The seed scoring scenario through the real processor and timers, on both backends."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness

DAY = 86400.0


def seed_lead(h: Harness, user: str = "vp-1") -> None:
    h.send(
        {
            "type": "identify",
            "userId": user,
            "traits": {"title": "VP Marketing", "email": f"{user}@acme.test"},
        },
        {"type": "group", "userId": user, "groupId": f"acme-{user}", "traits": {"employees": 500}},
    )
    h.send({"type": "page", "userId": user, "name": "Home", "properties": {"path": "/"}})
    h.send({"type": "page", "userId": user, "name": "Pricing", "properties": {"path": "/pricing"}})
    h.send({"type": "track", "userId": user, "event": "Lead Magnet Downloaded"})
    h.settle()


def score(h: Harness, user: str = "vp-1") -> dict[str, Any]:
    prof = h.profile("user_id", user)
    assert prof is not None
    return prof["scores"]["lead"]  # type: ignore[no-any-return]


def test_seed_scenario_scores_decays_and_keeps_the_stage(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h)
    s = score(h)
    assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (52, 25, 27, "MQL")
    qualified = h.sql(
        "SELECT COUNT(*) FROM events WHERE type = 'internal' AND event = 'Lead Qualified'"
    )
    assert qualified == [(1,)]

    # More activity does not qualify the lead again.
    h.send({"type": "page", "userId": "vp-1", "properties": {"path": "/pricing/enterprise"}})
    h.settle()
    assert score(h)["score"] == 62
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]

    h.advance(31 * DAY)
    s = score(h)
    assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (42, 25, 17, "MQL")
    h.advance(30 * DAY)
    s = score(h)
    assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (25, 25, 0, "MQL")


def test_decay_timer_fires_at_the_right_instant(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h)
    h.advance(30 * DAY - 60)
    assert score(h)["score"] == 52
    h.advance(120)
    assert score(h)["score"] == 32
    ledger = h.sql("SELECT kind, points, at FROM score_ledger WHERE kind = 'decay'")
    assert len(ledger) == 1 and ledger[0][1] == -20
    assert (
        ledger[0][2]
        == h.sql("SELECT MAX(ts) FROM events WHERE type != 'internal'")[0][0] + 30 * DAY
    )


def test_ledger_explains_the_score(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h)
    rows = h.sql("SELECT kind, rule, points FROM score_ledger ORDER BY id")
    rules = {(kind, rule, points) for kind, rule, points in rows}
    assert ("fit", "senior_title", 15) in rules
    assert ("fit", "company_200_plus", 10) in rules
    assert ("engagement", "home_page", 2) in rules
    assert ("engagement", "pricing_page", 10) in rules
    assert ("engagement", "lead_magnet", 15) in rules
    assert any(kind == "stage" for kind, _, _ in rows)


def test_merged_history_is_scored_on_the_survivor(scoring_harness: Harness) -> None:
    h = scoring_harness
    h.send({"type": "page", "anonymousId": "anon-9", "properties": {"path": "/pricing"}})
    h.send(
        {
            "type": "identify",
            "anonymousId": "anon-9",
            "userId": "u-9",
            "traits": {"title": "Intern"},
        }
    )
    h.settle()
    assert score(h, "u-9")["engagement"] == 10


def test_activity_postpones_decay_to_the_exact_instant(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h)
    h.advance(10 * DAY)
    h.send({"type": "page", "userId": "vp-1", "properties": {"path": "/docs"}})
    h.settle()
    last = h.sql("SELECT MAX(ts) FROM events WHERE type != 'internal'")[0][0]
    h.advance(20 * DAY + 60)  # the first window would have ended here: nothing is due yet
    assert score(h)["score"] == 52
    h.advance(10 * DAY)
    assert score(h)["score"] == 32
    at = h.sql("SELECT at FROM score_ledger WHERE kind = 'decay'")
    assert at == [(last + 30 * DAY,)]


def test_a_group_call_scores_its_account_traits_at_once(scoring_harness: Harness) -> None:
    """Account traits from a group call count at that call, not at the member's next event
    (a lead who only identifies and joins a large account has the company points)."""
    h = scoring_harness
    h.send({"type": "identify", "userId": "eng-1", "traits": {"title": "Engineer"}})
    h.send({"type": "group", "userId": "eng-1", "groupId": "big", "traits": {"employees": 500}})
    h.settle()
    s = score(h, "eng-1")
    assert (s["score"], s["fit"], s["stage"]) == (10, 10, "lead")
    assert h.sql(
        "SELECT e.type FROM score_ledger l JOIN events e ON e.message_id = l.message_id "
        "WHERE l.rule = 'company_200_plus'"
    ) == [("group",)]
    # A later group call that changes the account's traits is scored at that call too.
    h.send({"type": "group", "userId": "eng-1", "groupId": "big", "traits": {"employees": 50}})
    h.settle()
    assert score(h, "eng-1")["fit"] == 0


SECOND_MODEL = """\
    - id: product_b
      name: Product B score
      fit:
        - {id: engineer, field: title, op: matches, value: engineer, ignore_case: true, points: 5}
      engagement:
        - id: product_b_page
          type: page
          where:
            - { field: page.path, op: starts_with, value: /product-b }
          points: 20
      stages:
        - name: visitor
        - name: evaluator
          at: 20
"""


def test_two_models_in_one_workspace_keep_their_own_score_and_stage(
    backend_url: str, tmp_path: Path
) -> None:
    # The example with a second model appended to its list (as data, not by splicing text:
    # the example's rules change, and an anchor inside them does not stay last).
    example = yaml.safe_load(Path(EXAMPLE_PLAYBOOK).read_text())
    example["scoring"]["models"] += yaml.safe_load(textwrap.dedent(SECOND_MODEL))
    playbook = tmp_path / "two.yaml"
    playbook.write_text(yaml.safe_dump(example, sort_keys=False))
    h = make_harness(backend_url, str(playbook))
    try:
        seed_lead(h)
        h.send({"type": "page", "userId": "eng", "properties": {"path": "/product-b/docs"}})
        h.send({"type": "identify", "userId": "eng", "traits": {"title": "Engineer"}})
        h.settle()
        vp, eng = h.profile("user_id", "vp-1"), h.profile("user_id", "eng")
        assert vp is not None and eng is not None
        pick = lambda s: (s["score"], s["fit"], s["engagement"], s["stage"])  # noqa: E731
        assert pick(vp["scores"]["lead"]) == (52, 25, 27, "MQL")
        assert pick(vp["scores"]["product_b"]) == (0, 0, 0, "visitor")
        assert pick(eng["scores"]["lead"]) == (0, 0, 0, "subscriber")
        assert pick(eng["scores"]["product_b"]) == (25, 5, 20, "evaluator")
        # Each model's ledger lines and stage moves are its own.
        rows = h.sql(
            "SELECT model, kind, rule, points FROM score_ledger WHERE profile_id = ? ORDER BY id",
            eng["id"],
        )
        assert rows == [
            ("product_b", "engagement", "product_b_page", 20),
            ("product_b", "stage", None, 0),
            ("product_b", "fit", "engineer", 5),
        ]
        # Only the lead model's MQL announces itself.
        assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]
    finally:
        h.engine.stop()


def test_explain_finds_a_lead_by_a_phone_written_as_people_write_it(
    scoring_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Phones are stored in E.164; `explain` reads the number it is given as the API's lookup
    does, so a number with spaces (or, with a default region, a national one) finds the lead."""
    from leadloop.cli import main

    h = scoring_harness
    h.send(
        {"type": "identify", "userId": "tel-1", "traits": {"phone": "+44 20 7946 0958"}},
        {"type": "page", "userId": "tel-1", "properties": {"path": "/pricing"}},
    )
    h.settle()
    url = h.engine.url.url
    assert main(["explain", "+44 20 7946 0958", "--database-url", url]) == 0
    assert "lead: 10 = fit 0 + engagement 10" in capsys.readouterr().out
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LEADLOOP_DEFAULT_REGION", "GB")
        assert main(["explain", "020 7946 0958", "--database-url", url]) == 0
    assert "lead: 10 = fit 0 + engagement 10" in capsys.readouterr().out


def test_explain_prints_every_ledger_line_of_a_long_lived_lead(
    scoring_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """`explain` printed the first 10,000 lines and stopped without a word: a lead active for
    years was explained by its first months."""
    from leadloop.cli import main

    h = scoring_harness
    h.send({"type": "page", "userId": "old-1", "properties": {"path": "/pricing"}})
    h.settle()
    (pid,) = h.sql("SELECT id FROM profiles")[0]
    h.engine.writer.submit(
        lambda c: c.executemany(
            "INSERT INTO score_ledger (workspace_id, profile_id, model, model_version, at, kind, "
            "rule, points, fit, engagement, total, stage, reason, message_id) "
            "VALUES ('default', ?, 'lead', 'v', ?, 'engagement', 'x', 0, 0, 0, 0, 'lead', ?, NULL)",
            [(pid, 1.0 + i, f"line {i}") for i in range(10_050)],
        )
    ).result()
    assert main(["explain", "old-1", "--database-url", h.engine.url.url]) == 0
    out = capsys.readouterr().out
    assert "line 0\n" in out and "line 10049\n" in out
    assert out.count("  engagement ") == 10_051  # the pricing page and every line added


def test_a_model_no_longer_in_the_playbook_is_marked_so_on_the_profile(
    scoring_harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model removed from the playbook keeps its score rows (the ledger explains them), but
    the profile showed them as if they were live."""
    h = scoring_harness
    seed_lead(h)
    assert score(h)["in_playbook"] is True
    from leadloop.cli import main

    assert main(["explain", "vp-1", "--database-url", h.engine.url.url]) == 0
    assert "no longer in the live playbook" not in capsys.readouterr().out
    other = tmp_path / "other.yaml"
    models = yaml.safe_load(textwrap.dedent(SECOND_MODEL))
    other.write_text(yaml.safe_dump({"version": 1, "scoring": {"models": models}}))
    h.engine.apply_playbook_file(str(other))
    h.engine.refresh_playbooks()
    h.settle()
    prof = h.profile("user_id", "vp-1")
    assert prof is not None
    assert prof["scores"]["lead"]["in_playbook"] is False
    assert main(["explain", "vp-1", "--database-url", h.engine.url.url, "--model", "lead"]) == 0
    out = capsys.readouterr().out
    assert "stage MQL · profile" in out
    (headline,) = [line for line in out.splitlines() if line.startswith("lead: ")]
    assert headline.endswith(" · no longer in the live playbook")
