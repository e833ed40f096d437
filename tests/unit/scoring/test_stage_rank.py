"""A stage's rank ignores case, as every other use of a stage name does (`ScoringModel.stage`,
journey triggers and conditions, `leadloop backtest --stage`): a stage spelled `mql` is the
model's `MQL`, not a stage below all the others."""

from __future__ import annotations

from msgspec.structs import replace
from scoring_factories import T0, event, model_from, profile

from leadloop.scoring import initial_state, score_event

MODEL = model_from(
    "    - id: m\n"
    "      engagement: [{id: demo, event: Demo Requested, points: 20}]\n"
    "      stages:\n"
    "        - {name: subscriber}\n"
    "        - {name: lead, at: 10, actions: [{emit: Became Lead}]}\n"
    "        - {name: MQL, at: 50}\n"
)


def test_a_stage_ranks_the_same_in_any_case() -> None:
    assert MODEL.rank("MQL") == MODEL.rank("mql") == MODEL.rank("Mql") == 2
    assert MODEL.rank("LEAD") == MODEL.rank("lead") == 1
    assert MODEL.rank("customer") == -1


def test_a_threshold_below_a_stage_spelled_in_another_case_moves_nobody_down() -> None:
    """A state holding `mql` (written before the playbook spelled it `MQL`) is at the top: a
    lower threshold crossed later is no promotion, and runs no `Became Lead`."""
    state = replace(initial_state(MODEL), stage="mql")
    decision = score_event(state, event("track", T0, "Demo Requested"), profile(), {}, MODEL, T0)
    assert decision.stage_changes == ()
    assert decision.effects == ()
    assert decision.state.stage == "mql"
