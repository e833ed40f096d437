"""What a replay hands each event: the traits and account traits as they were at that point."""

from __future__ import annotations

import msgspec
from scoring_factories import DAY, T0, event, model_from, page

from leadloop.log.model import Event
from leadloop.scoring import ScoreChange, initial_state, rescore, score_event
from leadloop.scoring.replay import with_context


def group(at: float, group_id: str, traits: dict[str, object]) -> Event:
    item: Event = msgspec.structs.replace(event("group", at, traits=traits), group_id=group_id)
    return item


HISTORY = [
    event("identify", T0, traits={"title": "VP Sales"}),
    group(T0 + 1, "acme", {"employees": 500}),
    page("/", T0 + 2),
    group(T0 + 3, "acme", {"employees": 50}),
    page("/", T0 + 4),
    group(T0 + 5, "tiny", {"employees": 3}),
]


def test_each_event_sees_the_traits_of_its_time() -> None:
    seen = list(with_context("p1", HISTORY))
    assert [dict(account) for _, _, account in seen] == [
        {},
        {"employees": 500},
        {"employees": 500},
        {"employees": 50},
        {"employees": 50},
        {"employees": 3},
    ]
    assert all(who.traits == {"title": "VP Sales"} for _, who, _ in seen)
    assert [who.account_ids for _, who, _ in seen][-1] == ("acme", "tiny")


def test_replayed_fit_follows_the_account_as_live_scoring_does() -> None:
    model = model_from(
        "    - id: m\n"
        "      fit:\n"
        "        - {id: big, field: employees, source: account, op: gte, value: 200, points: 10}\n"
        "        - {id: vp, field: title, op: matches, value: '^VP', points: 15}\n"
        "      stages: [{name: subscriber}, {name: MQL, at: 50}]\n"
    )
    replayed = rescore(with_context("p1", HISTORY), model, T0 + DAY)
    state, changes = initial_state(model), list[ScoreChange]()
    for item, who, account in with_context("p1", HISTORY):
        decision = score_event(state, item, who, dict(account), model, T0 + DAY)
        state = decision.state
        changes.extend(decision.changes)
    assert replayed.state == state
    assert list(replayed.changes) == changes
    fits = [(c.rule_id, c.points, c.at) for c in replayed.changes if c.kind == "fit"]
    assert fits == [("vp", 15.0, T0), ("big", 10.0, T0 + 1), ("big", -10.0, T0 + 3)]
