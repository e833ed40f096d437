"""The seed scenario of the scoring issue, on the example playbook, with no clock and no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest
from scoring_factories import DAY, T0, event, page, profile

from leadloop.log.model import Event
from leadloop.playbook import load_playbook
from leadloop.scoring import (
    EmitEvent,
    ScoreDecision,
    Scores,
    ScoreState,
    ScoringModel,
    SendWebhook,
    decay_scores,
    initial_state,
    rescore,
    score_event,
    scores_at,
)

EXAMPLE = Path(__file__).parents[3] / "examples" / "playbook.yaml"
ENV = {
    "LEADLOOP_SALES_WEBHOOK_URL": "http://127.0.0.1:8765/sales",
    "LEADLOOP_SALES_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}
VP = profile({"title": "VP of Marketing", "company_size": 500, "email": "ada@example.com"})


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    found = load_playbook(EXAMPLE, env=ENV).model("lead")
    assert found is not None
    return found


def seed_events() -> list[Event]:
    return [
        event("identify", T0, traits={"title": "VP of Marketing"}),
        page("/", T0 + 60),
        # The path is read from the URL when the client sends no `path`.
        event("page", T0 + 120, context={"page": {"url": "https://acme.test/pricing?plan=pro"}}),
        event("track", T0 + 180, "Lead Magnet Downloaded"),
    ]


def run(model: ScoringModel) -> tuple[ScoreState, list[ScoreDecision]]:
    state = initial_state(model)
    decisions: list[ScoreDecision] = []
    for item in seed_events():
        decision = score_event(state, item, VP, {}, model, now=item.timestamp)
        decisions.append(decision)
        state = decision.state
    return state, decisions


def test_vp_at_500_person_company_reaches_mql_at_52(model: ScoringModel) -> None:
    state, decisions = run(model)
    last = T0 + 180
    assert scores_at(state, last) == Scores(
        model_id="lead", fit=25, engagement=27, total=52, stage="MQL"
    )
    moves = [(m.from_stage, m.to_stage) for d in decisions for m in d.stage_changes]
    assert moves == [("subscriber", "lead"), ("lead", "MQL")]

    effects = [effect for d in decisions for effect in d.effects]
    assert [type(effect) for effect in effects] == [EmitEvent, SendWebhook]
    emit, hook = effects
    assert isinstance(emit, EmitEvent) and isinstance(hook, SendWebhook)
    assert emit.name == "Lead Qualified"
    assert emit.properties["score"] == 52 and emit.properties["stage"] == "MQL"
    assert hook.url == ENV["LEADLOOP_SALES_WEBHOOK_URL"]
    assert hook.payload["score"] == {"total": 52, "fit": 25, "engagement": 27}
    assert hook.payload["fit_rules"] == ["senior_title", "company_200_plus"]
    assert decisions[-1].decay_due_at == last + 30 * DAY


def test_the_ledger_explains_every_point(model: ScoringModel) -> None:
    _, decisions = run(model)
    changes = [c for d in decisions for c in d.changes]
    assert [(c.kind, c.rule_id, c.points) for c in changes] == [
        ("fit", "senior_title", 15),
        ("fit", "company_200_plus", 10),
        ("engagement", "home_page", 2),
        ("engagement", "pricing_page", 10),
        ("engagement", "lead_magnet", 15),
    ]
    assert all(c.model_version == model.version for c in changes)
    assert changes[-1].total == 52
    assert all(c.message_id is not None for c in changes)
    assert "title='VP of Marketing'" in changes[0].reason


def test_later_events_do_not_fire_mql_again(model: ScoringModel) -> None:
    state, _ = run(model)
    decision = score_event(state, page("/pricing", T0 + 999), VP, {}, model, now=T0 + 999)
    assert decision.state.stage == "MQL"
    assert decision.effects == () and decision.stage_changes == ()
    assert scores_at(decision.state, T0 + 999).total == 62


def test_decay_after_31_and_61_days_keeps_stage(model: ScoringModel) -> None:
    state, _ = run(model)
    last = T0 + 180

    after_31 = decay_scores(state, model, now=last + 31 * DAY)
    scores = scores_at(after_31.state, last + 31 * DAY)
    assert (scores.total, scores.fit, scores.engagement, scores.stage) == (32, 25, 7, "MQL")
    [step] = after_31.changes
    assert (step.kind, step.points, step.at) == ("decay", -20, last + 30 * DAY)
    assert after_31.decay_due_at == last + 60 * DAY
    assert after_31.effects == () and after_31.stage_changes == ()

    after_61 = decay_scores(after_31.state, model, now=last + 61 * DAY)
    scores = scores_at(after_61.state, last + 61 * DAY)
    assert (scores.total, scores.fit, scores.engagement, scores.stage) == (25, 25, 0, "MQL")
    assert [(c.points, c.at) for c in after_61.changes] == [(-7, last + 60 * DAY)]
    assert after_61.decay_due_at is None  # engagement is at the floor: no timer needed

    # One late call applies both steps at their own instants, with the same result.
    at_once = decay_scores(state, model, now=last + 61 * DAY)
    assert at_once.state == after_61.state
    assert [c.at for c in at_once.changes] == [last + 30 * DAY, last + 60 * DAY]


def test_replay_gives_the_live_result(model: ScoringModel) -> None:
    history = [(item, VP, {}) for item in seed_events()]
    replayed = rescore(history, model, now=T0 + 180 + 61 * DAY)
    state, _ = run(model)
    live = decay_scores(state, model, now=T0 + 180 + 31 * DAY)
    live = decay_scores(live.state, model, now=T0 + 180 + 61 * DAY)
    assert replayed.state == live.state
    assert [type(e) for e in replayed.effects] == [EmitEvent, SendWebhook]


def test_unset_webhook_variables_disable_the_webhook_with_a_warning() -> None:
    playbook = load_playbook(EXAMPLE, env={})
    hooks = [w for w in playbook.warnings if w.field.startswith("webhooks")]
    assert [w.field for w in hooks] == ["webhooks[0].url"]
    assert hooks[0].line is not None
    model = playbook.model("lead")
    assert model is not None
    _, decisions = run(model)
    effects = [effect for d in decisions for effect in d.effects]
    assert [type(effect) for effect in effects] == [EmitEvent]


@pytest.mark.parametrize(
    ("title", "points"),
    [
        ("VP Marketing", 15),
        ("Sr. VP, Sales", 15),
        ("SVP Sales", 15),
        ("EVP, Marketing", 15),
        ("AVP Engineering", 15),
        ("svp", 15),
        ("Vice President, Sales", 15),
        ("Vice-President", 15),
        ("Director of Sales", 15),
        ("Head of Growth", 15),
        ("Chief Revenue Officer", 15),
        ("CEO", 15),
        ("CTO & co-founder", 15),
        ("C-level", 15),
        ("Engineer", 0),
        ("Software Engineer", 0),
        ("Developer", 0),
        ("Senior Developer", 0),
        ("Headhunter", 0),
        ("Directory Assistant", 0),
        ("Marketing Manager", 0),
        ("Coordinator", 0),
        ("MVP Program Lead", 0),
    ],
)
def test_senior_title_rule(model: ScoringModel, title: str, points: int) -> None:
    """The example's title rule: VP with its SVP/EVP/AVP grades, Vice President, Director,
    Head, Chief, C-level and CxO titles, as words, not inside other words."""
    who = profile({"title": title})
    decision = score_event(initial_state(model), event("identify", T0), who, {}, model, T0)
    assert decision.state.fit == points
