"""Properties of the pure core, on generated models and event histories."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scoring_factories import DAY, T0, event, profile

from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.scoring import (
    ScoreState,
    ScoringModel,
    decay_scores,
    initial_state,
    rescore,
    score_event,
    total_at,
)
from leadloop.scoring.model import (
    Cap,
    Condition,
    Decay,
    EngagementRule,
    EventFilter,
    FitRule,
    Predicate,
    SessionLimit,
    Stage,
    StepDecay,
)

PATHS = ("/", "/pricing", "/blog", "/jobs")
TITLES = ("VP Sales", "Intern", None)


@st.composite
def models(draw: st.DrawFn) -> ScoringModel:
    def points() -> float:
        return float(draw(st.integers(-10, 30)))

    rules = tuple(
        EngagementRule(
            id=f"page{i}",
            when=EventFilter(
                types=("page",),
                where=(Condition("page.path", Predicate("starts_with", path)),),
            ),
            points=points(),
            once=draw(st.booleans()),
            cap=draw(
                st.none()
                | st.builds(
                    Cap,
                    points=st.integers(1, 50).map(float),
                    per=st.none() | st.sampled_from([DAY, 7 * DAY]),
                )
            ),
            half_life=draw(st.none() | st.sampled_from([0.0, 5 * DAY])),
        )
        for i, path in enumerate(PATHS)
    )
    step = draw(
        st.none()
        | st.builds(
            StepDecay, points=st.integers(1, 30).map(float), every=st.sampled_from([DAY, 30 * DAY])
        )
    )
    return ScoringModel(
        id="m",
        version="v1",
        stages=(Stage("subscriber"), Stage("lead", at=10.0), Stage("MQL", at=50.0)),
        fit=(FitRule("title", ("title",), "any", Predicate("equals", "VP Sales"), 15.0),),
        engagement=(
            *rules,
            EngagementRule("signup", EventFilter(names=("Signed Up",)), points=points()),
        ),
        decay=Decay(
            step=step,
            floor=float(draw(st.integers(0, 10))),
            half_life=draw(st.none() | st.sampled_from([3 * DAY, 30 * DAY])),
        ),
        cap=draw(
            st.none() | st.builds(Cap, points=st.integers(5, 100).map(float), per=st.just(7 * DAY))
        ),
        session=draw(st.none() | st.builds(SessionLimit, max_points=st.integers(1, 30).map(float))),
    )


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[Event, Profile, dict[str, Any]]]:
    gaps = draw(
        st.lists(st.sampled_from([0.0, 60.0, 3600.0, DAY, 10 * DAY, 31 * DAY]), max_size=25)
    )
    out = []
    now = T0
    for gap in gaps:
        now += gap
        title = draw(st.sampled_from(TITLES))
        who = profile({"title": title} if title else {})
        if draw(st.booleans()):
            item = event("page", now, properties={"path": draw(st.sampled_from(PATHS))})
        else:
            item = event(draw(st.sampled_from(["track", "identify"])), now, "Signed Up")
        out.append((item, who, {}))
    return out


def live(
    model: ScoringModel,
    history: list[tuple[Event, Profile, dict[str, Any]]],
    lateness: list[float],
) -> tuple[ScoreState, list[Any]]:
    """Process as the shell does: events in order, and each decay timer firing when due, or
    late by a drawn delay (a busy worker), but never after the next event in the log."""
    state = initial_state(model)
    changes: list[Any] = []
    due: float | None = None
    delays = iter(lateness)
    for item, who, account in history:
        while due is not None:
            fire_at = due + next(delays, 0.0)
            if fire_at > item.timestamp:
                break
            decision = decay_scores(state, model, fire_at)
            state, due = decision.state, decision.decay_due_at
            changes.extend(decision.changes)
        decision = score_event(state, item, who, account, model, item.timestamp)
        state, due = decision.state, decision.decay_due_at
        changes.extend(decision.changes)
    return state, changes


@settings(max_examples=150, deadline=None)
@given(models(), histories(), st.lists(st.sampled_from([0.0, 1.0, 3600.0, 40 * DAY]), max_size=40))
def test_replaying_the_log_gives_the_live_scores(
    model: ScoringModel,
    history: list[tuple[Event, Profile, dict[str, Any]]],
    lateness: list[float],
) -> None:
    end = (history[-1][0].timestamp if history else T0) + 100 * DAY
    state, changes = live(model, history, lateness)
    final = decay_scores(state, model, end)
    replayed = rescore(history, model, end)
    assert replayed.state == final.state
    assert list(replayed.changes) == [*changes, *final.changes]


@settings(max_examples=150, deadline=None)
@given(models(), histories(), st.lists(st.floats(0, 200 * DAY), min_size=1, max_size=8))
def test_decay_never_raises_a_score(
    model: ScoringModel,
    history: list[tuple[Event, Profile, dict[str, Any]]],
    gaps: list[float],
) -> None:
    state = rescore(history, model, history[-1][0].timestamp if history else T0).state
    at = state.as_of or T0
    previous = total_at(state, at)
    stage = state.stage
    for gap in gaps:
        at += gap
        decision = decay_scores(state, model, at)
        assert total_at(decision.state, at) <= total_at(state, at) + 1e-9
        assert total_at(decision.state, at) <= previous + 1e-9
        assert all(change.points <= 0 for change in decision.changes)
        assert decision.state.stage == stage
        previous = total_at(decision.state, at)
        state = decision.state


@settings(max_examples=150, deadline=None)
@given(models(), histories())
def test_caps_hold(
    model: ScoringModel, history: list[tuple[Event, Profile, dict[str, Any]]]
) -> None:
    changes = rescore(history, model, T0 + 10_000 * DAY).changes
    awards = [c for c in changes if c.kind == "engagement" and c.points > 0]
    for rule in model.engagement:
        mine = [c for c in awards if c.rule_id == rule.id]
        if rule.once:
            assert len([c for c in changes if c.rule_id == rule.id]) <= 1
        if rule.cap is not None:
            assert_capped(mine, rule.cap)
    if model.cap is not None:
        assert_capped(awards, model.cap)


def assert_capped(awards: list[Any], cap: Cap) -> None:
    for last in awards:
        start = -float("inf") if cap.per is None else last.at - cap.per
        window = sum(c.points for c in awards if start < c.at <= last.at)
        assert window <= cap.points + 1e-9
