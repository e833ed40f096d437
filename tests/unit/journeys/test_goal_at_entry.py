"""`goal_at_entry`: a journey does not enter a profile whose goal already holds."""

from __future__ import annotations

from dataclasses import dataclass

from leadloop.journeys import decide
from leadloop.journeys.model import (
    Advance,
    EventTrigger,
    Goal,
    Journey,
    Membership,
    SendStep,
    StageTrigger,
    Trigger,
)
from leadloop.log.model import Event
from leadloop.policy.model import PolicyConfig
from leadloop.scoring.model import EventFilter
from tests.unit.journeys.test_decide import T0, FakeFacts

MQL_GOAL = Goal(stage=StageTrigger("lead", ("MQL", "SQL")))


@dataclass
class StagedFacts(FakeFacts):
    current: str | None = None

    def stage(self, model: str) -> str | None:
        return self.current


def nurture(trigger: Trigger | None = None, goal: Goal | None = MQL_GOAL) -> Journey:
    return Journey(
        id="nurture",
        version="v1",
        trigger=trigger or StageTrigger("lead", ("lead",)),
        steps=(SendStep("guide", ("email",), "guide"),),
        goal=goal,
    )


def event(name: str = "Lead Magnet Downloaded") -> Event:
    return Event(
        seq=1,
        workspace_id="ws",
        message_id="m1",
        type="track",
        event=name,
        timestamp=T0,
        received_at=T0,
    )


def enter(
    journey: Journey, moves: list[tuple[str, str, str]], facts: FakeFacts
) -> tuple[Membership, Advance | None]:
    return decide.enter_journey(
        journey,
        Membership(),
        "ws",
        "p1",
        "m1",
        facts,
        PolicyConfig(),
        T0,
        event=event(),
        moves=moves,
    )


def test_a_move_past_the_goal_after_the_entry_move_skips_the_journey() -> None:
    moves = [("lead", "subscriber", "lead"), ("lead", "lead", "MQL")]
    membership, advance = enter(nurture(), moves, StagedFacts(current="MQL"))
    assert advance is None
    assert membership.entries == 0 and membership.active is None
    assert membership.skipped == 1 and membership.skipped_at == T0
    assert membership.skip_reason == "goal already reached: lead moved to MQL"


def test_below_the_goal_enters_and_sends() -> None:
    membership, advance = enter(
        nurture(), [("lead", "subscriber", "lead")], StagedFacts(current="lead")
    )
    assert advance is not None and membership.entries == 1 and membership.skipped == 0
    assert [type(e).__name__ for e in advance.effects] == ["QueueSend"]


def test_a_move_of_the_goal_with_from_counts_only_after_the_trigger_move() -> None:
    goal = Goal(stage=StageTrigger("lead", ("MQL",), ("lead",)))
    journey = nurture(goal=goal)
    # The goal move came first, the entry move after it: the profile is a lead again.
    before = [("lead", "lead", "MQL"), ("lead", "MQL", "lead")]
    assert decide.goal_at_entry(journey, event(), before, StagedFacts(current="lead")) is None
    after = [("lead", "subscriber", "lead"), ("lead", "lead", "MQL")]
    assert decide.goal_at_entry(journey, event(), after, StagedFacts(current="MQL")) is not None


def test_already_standing_on_a_goal_stage_skips_an_event_entry() -> None:
    journey = nurture(trigger=EventTrigger(EventFilter(names=("Lead Magnet Downloaded",))))
    reason = decide.goal_at_entry(journey, event(), [], StagedFacts(current="SQL"))
    assert reason == "goal already reached: lead is SQL"
    assert decide.goal_at_entry(journey, event(), [], StagedFacts(current="lead")) is None


def test_the_entering_event_may_be_the_goal_event() -> None:
    goal = Goal(event=EventFilter(names=("Demo Booked",)))
    journey = nurture(trigger=EventTrigger(EventFilter(names=("Demo Booked",))), goal=goal)
    reason = decide.goal_at_entry(journey, event("Demo Booked"), [], StagedFacts())
    assert reason == "goal already reached by Demo Booked"
    assert decide.goal_at_entry(journey, event("Other"), [], StagedFacts()) is None
    assert decide.goal_at_entry(nurture(goal=None), event(), [], StagedFacts(current="MQL")) is None


def test_simulate_shows_the_journey_not_entered_and_why() -> None:
    from leadloop.journeys.simulate import Simulation, render

    reason = "goal already reached: lead moved to MQL"
    skipped = [{"journey": "nurture", "times": 1, "at": T0, "reason": reason}]
    lines = render(Simulation("p1", [], [], {}, skipped))
    assert lines[-1] == f"journey nurture: not entered at 2027-01-15 08:00:00 UTC — {reason}"
