"""A stage whose threshold is at or below the starting score is entered by the profile's first
event: a new profile starts at 0, and `at: 0` (everyone who shows up is a lead) was never
crossed from below, so nobody entered it and its actions never ran."""

from __future__ import annotations

from scoring_factories import DAY, T0, event, model_from, page, profile

from leadloop.scoring import initial_state, score_event

MODEL = model_from(
    "    - id: m\n"
    "      engagement: [{id: demo, event: Demo Requested, points: 20}]\n"
    "      stages:\n"
    "        - {name: subscriber}\n"
    "        - {name: lead, at: 0, actions: [{emit: Became Lead}]}\n"
    "        - {name: MQL, at: 50}\n"
)


def test_the_first_event_enters_a_stage_at_zero_once() -> None:
    first = score_event(initial_state(MODEL), page("/docs", T0), profile(), {}, MODEL, T0)
    assert first.state.stage == "lead"
    assert [m.to_stage for m in first.stage_changes] == ["lead"]
    assert [e.name for e in first.effects] == ["Became Lead"]  # type: ignore[union-attr]
    second = score_event(first.state, page("/docs", T0 + DAY), profile(), {}, MODEL, T0 + DAY)
    assert second.stage_changes == () and second.effects == ()


def test_a_threshold_above_the_start_is_still_crossed_only_by_points() -> None:
    model = model_from(
        "    - id: m\n"
        "      engagement: [{id: demo, event: Demo Requested, points: 20}]\n"
        "      stages: [{name: subscriber}, {name: lead, at: 10}]\n"
    )
    first = score_event(initial_state(model), page("/docs", T0), profile(), {}, model, T0)
    assert first.state.stage == "subscriber" and first.stage_changes == ()
    demo = event("track", T0 + 1, "Demo Requested")
    assert score_event(first.state, demo, profile(), {}, model, T0 + 1).state.stage == "lead"
