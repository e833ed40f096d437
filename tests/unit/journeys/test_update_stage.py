"""`update_profile` with `stage`: validation (the model defaults to the playbook's only one),
and the scoring decision that sets the stage when the log reaches the step's event."""

from __future__ import annotations

import pytest

from leadloop.errors import PlaybookError
from leadloop.identity.model import Profile
from leadloop.journeys.config import journey_from_definition, parse_journeys
from leadloop.journeys.model import PROFILE_UPDATE_EVENT, UpdateProfileStep
from leadloop.log.model import Event
from leadloop.playbook.load import parse_playbook
from leadloop.scoring import decide
from leadloop.scoring.model import initial_state
from tests.unit.journeys.test_config import BASE, error, flow, load

T0 = 1_800_000_000.0
SECOND_MODEL = """scoring:
  models:
    - id: partner
      stages:
        - name: prospect
        - name: MQL
          at: 30
"""
BASE_TWO_MODELS = BASE.replace("scoring:\n  models:\n", SECOND_MODEL, 1)


def update(extra: str) -> str:
    return flow(f"        - {{ id: u, type: update_profile, stage: MQL{extra} }}")


def test_stage_without_model_sets_the_only_model_and_is_stored_with_it() -> None:
    journey = load(update("")).journey("j")  # type: ignore[attr-defined]
    step = journey.step("u")
    assert step == UpdateProfileStep("u", stage="MQL", model="lead")
    again = journey_from_definition(journey.definition, journey.id, journey.version)
    assert again.step("u") == step


def test_unknown_stage_or_model_names_file_line_and_field() -> None:
    err = error(update(", model: lead").replace("stage: MQL", "stage: Hot"))
    assert err.file == "pb.yaml" and err.line is not None
    assert err.field.endswith("steps[0].stage") and "no stage 'Hot'" in err.message
    err = error(update(", model: nope"))
    assert err.field.endswith("steps[0].model") and "no scoring model 'nope'" in err.message
    err = error(flow("        - { id: u, type: update_profile, model: lead, traits: {a: 1} }"))
    assert "`model` goes with `stage`" in err.message


def test_with_several_models_the_model_must_be_named() -> None:
    playbook = parse_playbook(BASE_TWO_MODELS + update(""), "pb.yaml", env={})
    assert [m.id for m in playbook.models] == ["partner", "lead"]
    with pytest.raises(PlaybookError) as caught:
        parse_journeys(playbook)
    err = caught.value
    assert err.file == "pb.yaml" and err.line is not None and err.field.endswith("steps[0].model")
    assert "name the scoring `model` whose stage to set (partner, lead)" in err.message
    playbook = parse_playbook(BASE_TWO_MODELS + update(", model: partner"), "pb.yaml", env={})
    step = parse_journeys(playbook).journey("j").step("u")  # type: ignore[union-attr]
    assert step == UpdateProfileStep("u", stage="MQL", model="partner")


def journey_event(model: str, stage: str) -> Event:
    return Event(
        seq=7,
        workspace_id="ws",
        message_id="jpu:1",
        type="internal",
        event=PROFILE_UPDATE_EVENT,
        timestamp=T0,
        received_at=T0,
        body={
            "profileId": "p1",
            "properties": {"journey": "j", "step": "u", "model": model, "stage": stage},
        },
    )


def test_scoring_sets_the_stage_a_journey_names_with_a_ledger_line() -> None:
    playbook = parse_playbook(BASE_TWO_MODELS + update(""), "pb.yaml", env={})
    lead, partner = playbook.model("lead"), playbook.model("partner")
    assert lead is not None and partner is not None
    profile = Profile(id="p1", workspace_id="ws", first_seen=T0, last_seen=T0, last_activity=T0)
    event = journey_event("lead", "MQL")
    decision = decide.score_event(initial_state(lead), event, profile, {}, lead, T0)
    assert decision.state.stage == "MQL"
    (move,) = decision.stage_changes
    assert (move.from_stage, move.to_stage, move.cause) == ("subscriber", "MQL", "journey")
    assert move.rule_id == "journey:j/u"
    # Moving up runs the stage's actions, as any other move would.
    assert [getattr(e, "name", None) for e in decision.effects][:1] == ["Lead Qualified"]
    # Another model's stage is not this model's business.
    other = decide.score_event(initial_state(partner), event, profile, {}, partner, T0)
    assert other.state.stage == initial_state(partner).stage and not other.stage_changes
    # A stage the model no longer has is ignored, with a ledger line saying so.
    gone = decide.score_event(
        initial_state(lead), journey_event("lead", "Hot"), profile, {}, lead, T0
    )
    assert not gone.stage_changes
    assert [c.reason for c in gone.changes if c.kind == "stage"] == [
        "journey:j/u: unknown stage 'Hot' ignored"
    ]
