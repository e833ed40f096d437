"""Rules one at a time: operators, fields, caps, sessions, half-life, stages set by events."""

from __future__ import annotations

from typing import Any

import pytest
from scoring_factories import DAY, T0, event, model_from, page, profile

from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.scoring import (
    EmitEvent,
    ScoreDecision,
    ScoringModel,
    decay_scores,
    initial_state,
    score_event,
    scores_at,
)
from leadloop.scoring.match import page_path, to_number

STAGES = "      stages: [{name: subscriber}, {name: MQL, at: 50}]\n"


def run_all(
    model: ScoringModel, events: list[Event], who: Profile | None = None
) -> list[ScoreDecision]:
    state = initial_state(model)
    out = []
    for item in events:
        decision = score_event(state, item, who or profile(), {}, model, now=item.timestamp)
        out.append(decision)
        state = decision.state
    return out


def fit_model(rule: str) -> ScoringModel:
    return model_from(f"    - id: m\n      fit:\n        - {{id: r, points: 5, {rule}}}\n{STAGES}")


@pytest.mark.parametrize(
    ("rule", "traits", "account", "expected"),
    [
        (
            "field: industry, op: equals, value: SaaS, ignore_case: true",
            {"industry": "saas"},
            {},
            5,
        ),
        ("field: industry, op: equals, value: SaaS", {"industry": "saas"}, {}, 0),
        ("field: country, op: in, value: [DE, FR]", {"country": "FR"}, {}, 5),
        ("field: title, op: matches, value: '^head'", {"title": "Head of Ops"}, {}, 0),
        ("field: title, op: matches, value: '^head', ignore_case: true", {"title": "Head"}, {}, 5),
        ("field: [company_size, employees], op: gte, value: 200", {"employees": "201-500"}, {}, 5),
        ("field: [company_size, employees], op: gte, value: 200", {"company_size": 50}, {}, 0),
        ("field: employees, op: gt, value: 200, source: account", {}, {"employees": 1000}, 5),
        ("field: employees, op: gt, value: 200, source: profile", {}, {"employees": 1000}, 0),
        ("field: employees, op: lt, value: 10", {"employees": "n/a"}, {}, 0),
        ("field: employees, op: lte, value: 10", {"employees": "1,000"}, {}, 0),
        # lt/lte hold below (and lte at) the value, from numbers, numeric text and ranges.
        ("field: employees, op: lt, value: 10", {"employees": 9}, {}, 5),
        ("field: employees, op: lt, value: 10", {"employees": 10}, {}, 0),
        ("field: employees, op: lt, value: 10", {"employees": "9.5"}, {}, 5),
        ("field: employees, op: lte, value: 10", {"employees": 10}, {}, 5),
        ("field: employees, op: lte, value: 10", {"employees": 10.5}, {}, 0),
        ("field: employees, op: lte, value: 10", {"employees": "1-10"}, {}, 5),
        ("field: employees, op: lt, value: 50, source: account", {}, {"employees": 12}, 5),
        ("field: phone, op: exists", {"phone": "+4930123"}, {}, 5),
        ("field: phone, op: exists, value: false", {}, {}, 5),
        ("field: tags, op: equals, value: vip", {"tags": ["new", "vip"]}, {}, 5),
        ("field: domain, op: contains, value: gmail", {"domain": "gmail.com"}, {}, 5),
        ("field: domain, op: starts_with, value: mail", {"domain": "gmail.com"}, {}, 0),
        ("field: address.country, op: equals, value: DE", {"address": {"country": "DE"}}, {}, 5),
        # Each operator's less common shapes: folded, numeric text, lists, non-text values.
        (
            "field: domain, op: starts_with, value: GMail, ignore_case: true",
            {"domain": "gmail.com"},
            {},
            5,
        ),
        (
            "field: domain, op: contains, value: MAIL, ignore_case: true",
            {"domain": "gmail.com"},
            {},
            5,
        ),
        ("field: domain, op: contains, value: MAIL", {"domain": "gmail.com"}, {}, 0),
        ("field: zip, op: starts_with, value: '10'", {"zip": 10115}, {}, 5),
        ("field: zip, op: contains, value: '01'", {"zip": True}, {}, 0),
        ("field: zip, op: matches, value: '^1\\d+$'", {"zip": 10115}, {}, 5),
        ("field: employees, op: equals, value: 1000", {"employees": "1,000"}, {}, 5),
        # A number on either side makes `equals` numeric: a quoted number in the playbook equals
        # the number an event carries, as a number in the playbook equals the text "1,000".
        ("field: employees, op: equals, value: '1000'", {"employees": 1000}, {}, 5),
        ("field: employees, op: equals, value: '1,000'", {"employees": 1000.0}, {}, 5),
        ("field: employees, op: in, value: ['10', '1000']", {"employees": 1000}, {}, 5),
        ("field: employees, op: equals, value: '1000'", {"employees": 999}, {}, 0),
        # Text against text stays text: leading zeros of zip codes and ids are kept.
        ("field: zip, op: equals, value: '01067'", {"zip": "1067"}, {}, 0),
        ("field: zip, op: equals, value: '01067'", {"zip": "01067"}, {}, 5),
        ("field: vip, op: equals, value: '1'", {"vip": True}, {}, 0),
        ("field: country, op: in, value: [de, fr], ignore_case: true", {"country": "FR"}, {}, 5),
        ("field: country, op: in, value: [DE, FR]", {"country": ["US", "DE"]}, {}, 5),
        ("field: tags, op: exists", {"tags": []}, {}, 0),
    ],
)
def test_fit_operators(
    rule: str, traits: dict[str, Any], account: dict[str, Any], expected: int
) -> None:
    model = fit_model(rule)
    who = profile(traits)
    decision = score_event(initial_state(model), event("identify", T0), who, account, model, T0)
    assert decision.state.fit == expected


def test_fit_is_recomputed_and_a_lost_trait_is_logged() -> None:
    model = fit_model("field: title, op: equals, value: CEO")
    first = score_event(
        initial_state(model), event("identify", T0), profile({"title": "CEO"}), {}, model, T0
    )
    second = score_event(
        first.state, event("identify", T0 + 1), profile({"title": "Intern"}), {}, model, T0 + 1
    )
    assert second.state.fit == 0
    [change] = second.changes
    assert (change.kind, change.rule_id, change.points) == ("fit", "r", -5)
    assert "no longer holds" in change.reason


@pytest.mark.parametrize(
    ("item", "path"),
    [
        (event("page", T0, properties={"path": "/a", "url": "https://x.test/b"}), "/a"),
        (event("page", T0, context={"page": {"path": "/c", "url": "https://x.test/d"}}), "/c"),
        (event("page", T0, properties={"url": "https://x.test/e?x=1"}), "/e"),
        (event("page", T0, context={"page": {"url": "https://x.test"}}), "/"),
        (event("page", T0), None),
    ],
)
def test_page_path_sources(item: Event, path: str | None) -> None:
    assert page_path(item) == path


def test_number_shapes() -> None:
    assert [to_number(v) for v in (5, "1,000", "201-500", "500+", "x", True, None)] == [
        5.0,
        1000.0,
        201.0,
        500.0,
        None,
        None,
        None,
    ]


def engagement_model(rules: str, extra: str = "") -> ScoringModel:
    return model_from(f"    - id: m\n      engagement:\n{rules}{extra}{STAGES}")


def test_url_query_parameters_and_event_names() -> None:
    model = engagement_model(
        "        - id: ads\n          type: page\n"
        "          where: [{field: page.query.utm_source, op: in, value: [google, meta]}]\n"
        "          points: 3\n"
        "        - id: demo\n          event: [Demo Requested, Trial Started]\n          points: 20\n"
    )
    events = [
        event("page", T0, properties={"url": "https://x.test/?utm_source=meta"}),
        event("page", T0 + 1, context={"page": {"url": "https://x.test/?utm_source=bing"}}),
        event("track", T0 + 2, "Trial Started"),
        event("internal", T0 + 3, "Trial Started"),  # the engine's own events never score
    ]
    decisions = run_all(model, events)
    assert [[c.rule_id for c in d.changes] for d in decisions] == [["ads"], [], ["demo"], []]


def test_once_rules_award_only_the_first_time() -> None:
    model = engagement_model("        - {id: signup, event: Signed Up, points: 10, once: true}\n")
    decisions = run_all(model, [event("track", T0 + i, "Signed Up") for i in range(3)])
    assert scores_at(decisions[-1].state, T0 + 3).engagement == 10


def test_rule_cap_per_period_holds_back_points_and_says_so() -> None:
    model = engagement_model(
        "        - {id: blog, type: page, points: 10, cap: {points: 25, per: 7d}}\n"
    )
    times = [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 7 * DAY + 0.5]
    decisions = run_all(model, [page("/blog", t) for t in times])
    awarded = [d.changes[0].points for d in decisions]
    assert awarded == [10, 10, 5, 0, 10]  # the first award left the window at the 5th
    assert "held back by rule cap 25 per 7d" in decisions[2].changes[0].reason


def test_model_cap_and_session_limit() -> None:
    model = engagement_model(
        "        - {id: any_page, type: page, points: 4}\n",
        "      cap: {points: 100}\n      session: {max_points: 10, timeout: 30m}\n",
    )
    times = [T0, T0 + 60, T0 + 120, T0 + 180, T0 + 3600, T0 + 3660]
    decisions = run_all(model, [page("/", t) for t in times])
    assert [d.changes[0].points for d in decisions] == [4, 4, 2, 0, 4, 4]


def test_a_session_over_holds_back_nothing_from_a_later_server_event() -> None:
    """identify and group calls are not activity, so they start no session: one days after
    the visit that reached the limit was held back by that visit's session limit."""
    model = engagement_model(
        "        - {id: any_page, type: page, points: 10}\n"
        "        - {id: signup, type: identify, points: 5}\n",
        "      session: {max_points: 10, timeout: 30m}\n",
    )
    decisions = run_all(
        model,
        [page("/", T0), event("identify", T0 + 60), event("identify", T0 + 2 * DAY)],
    )
    assert [d.changes[-1].points for d in decisions] == [10, 0, 5]
    assert "held back" not in decisions[-1].changes[-1].reason


def test_a_session_resumed_after_another_keeps_what_it_added() -> None:
    """Two sessions at once (a phone and a laptop, each sending its `context.sessionId`): each
    adds at most the limit, however their events interleave. Resuming one used to start it
    again from 0, so alternating devices added without bound."""
    model = engagement_model(
        "        - {id: any_page, type: page, points: 4}\n",
        "      session: {max_points: 10, timeout: 30m}\n",
    )
    sessions = ["phone", "laptop"] * 4 + ["phone"]
    events = [
        event("page", T0 + 60 * i, properties={"path": "/"}, context={"sessionId": sid})
        for i, sid in enumerate(sessions)
    ]
    decisions = run_all(model, events)
    assert [d.changes[0].points for d in decisions] == [4, 4, 4, 4, 2, 2, 0, 0, 0]
    assert scores_at(decisions[-1].state, T0 + 600).engagement == 20
    # A session idle past the timeout while another went on is not remembered: seen again,
    # it starts afresh (and the state does not keep every session id it ever saw).
    later = [
        event("page", T0 + 600 * k, properties={"path": "/"}, context={"sessionId": sid})
        for k, sid in [*((k, "phone") for k in range(1, 7)), (7, "laptop")]
    ]
    resumed = run_all(model, [*events, *later])[-7:]
    assert [d.changes[0].points for d in resumed] == [0, 0, 0, 0, 0, 0, 4]
    assert [s.key for s in resumed[-1].state.parked_sessions] == ["id:phone"]


def test_lifetime_model_cap_binds_for_good() -> None:
    """A model cap without `per` covers the whole history: once it is reached, no later event
    adds points, however long after, and each holding back is explained."""
    model = engagement_model(
        "        - {id: any_page, type: page, points: 4}\n"
        "        - {id: signup, type: track, event: Signed Up, points: 3}\n",
        "      cap: {points: 10}\n",
    )
    times = [T0, T0 + DAY, T0 + 2 * DAY, T0 + 400 * DAY]
    decisions = run_all(
        model, [*(page("/", t) for t in times), event("track", T0 + 401 * DAY, "Signed Up")]
    )
    assert [d.changes[0].points for d in decisions[:4]] == [4, 4, 2, 0]
    assert "held back by model cap 10" in decisions[2].changes[0].reason
    assert "held back by model cap 10" in decisions[3].changes[0].reason
    assert "held back" not in decisions[1].changes[0].reason
    assert decisions[-1].changes[0].points == 0  # another rule, the same model cap
    assert decisions[-1].state.model_total == 10
    assert scores_at(decisions[-1].state, T0 + 401 * DAY).engagement == 10


def test_negative_points_and_half_life() -> None:
    model = engagement_model(
        "        - {id: careers, type: page, where: [{field: page.path, op: starts_with, value: /jobs}],"
        " points: -5}\n"
        "        - {id: webinar, event: Webinar Attended, points: 40, half_life: 10d}\n"
    )
    decisions = run_all(model, [page("/jobs/1", T0), event("track", T0, "Webinar Attended")])
    state = decisions[-1].state
    assert scores_at(state, T0).engagement == 35
    assert scores_at(state, T0 + 10 * DAY).engagement == 15  # 40 halves, the penalty stays
    assert scores_at(state, T0 + 20 * DAY).engagement == 5


def test_step_decay_takes_from_fading_points_too_and_respects_the_floor() -> None:
    model = engagement_model(
        "        - {id: webinar, event: Webinar Attended, points: 40}\n",
        "      decay: {step: {points: 15, every: 30d}, floor: 10, half_life: 30d}\n",
    )
    [decision] = run_all(model, [event("track", T0, "Webinar Attended")])
    later = decay_scores(decision.state, model, T0 + 90 * DAY)
    # day 30: 20 -> 10 (only 10 above the floor); later steps find nothing above it
    assert [(c.points, c.at) for c in later.changes] == [(-10, T0 + 30 * DAY)]
    assert scores_at(later.state, T0 + 30 * DAY).engagement == 10


def test_step_decay_reaches_a_floor_below_zero_and_stops_there() -> None:
    """A negative floor lets decay take engagement below zero; the ledger's steps are what the
    score lost, and once at the floor no step is due (no timer firing every window forever)."""
    model = engagement_model(
        "        - {id: visit, type: page, points: 5}\n",
        "      decay: {step: {points: 20, every: 30d}, floor: -10}\n",
    )
    [decision] = run_all(model, [page("/", T0)])
    later = decay_scores(decision.state, model, T0 + 400 * DAY)
    assert [(c.points, c.engagement) for c in later.changes] == [(-15, -10)]
    assert scores_at(later.state, T0 + 400 * DAY).engagement == -10
    assert later.decay_due_at is None


def test_stage_set_by_an_event_runs_actions_only_upwards() -> None:
    model = model_from(
        "    - id: m\n"
        "      stage_rules:\n"
        "        - {id: crm, event: CRM Stage Changed, stage_field: properties.stage}\n"
        "      stages:\n"
        "        - {name: lead}\n"
        "        - {name: SQL, actions: [{emit: Sales Accepted}, {webhook: sales}]}\n"
    )
    events = [
        event("track", T0, "CRM Stage Changed", properties={"stage": "sql"}),
        event("track", T0 + 1, "CRM Stage Changed", properties={"stage": "lead"}),
        event("track", T0 + 2, "CRM Stage Changed", properties={"stage": "won"}),
    ]
    decisions = run_all(model, events)
    assert [d.state.stage for d in decisions] == ["SQL", "lead", "lead"]
    assert [len(d.effects) for d in decisions] == [2, 0, 0]
    assert decisions[0].stage_changes[0].cause == "event"
    assert "unknown stage 'won'" in decisions[2].changes[0].reason


def test_a_stage_set_by_an_event_is_not_undone_by_the_thresholds_its_points_cross() -> None:
    # The CRM moves the lead back down with an event that also earns points: the threshold
    # those points cross took the lead straight back to MQL and announced it a second time.
    model = model_from(
        "    - id: m\n"
        "      engagement:\n"
        "        - {id: demo, event: Demo Requested, points: 60}\n"
        "        - {id: bounce, event: Email Bounced, points: -40}\n"
        "        - {id: crm_touch, event: CRM Stage Changed, points: 30}\n"
        "      stage_rules:\n"
        "        - {id: crm, event: CRM Stage Changed, stage_field: properties.stage}\n"
        "      stages:\n"
        "        - {name: lead}\n"
        "        - {name: MQL, at: 50, actions: [{emit: Lead Qualified}]}\n"
    )
    decisions = run_all(
        model,
        [
            event("track", T0, "Demo Requested"),
            event("track", T0 + 1, "Email Bounced"),
            event("track", T0 + 2, "CRM Stage Changed", properties={"stage": "lead"}),
        ],
    )
    assert [d.state.stage for d in decisions] == ["MQL", "MQL", "lead"]
    assert [len(d.effects) for d in decisions] == [1, 0, 0]
    assert scores_at(decisions[-1].state, T0 + 2).total == 50


def test_one_event_crossing_two_thresholds_enters_both_stages() -> None:
    model = model_from(
        "    - id: m\n"
        "      engagement: [{id: demo, event: Demo Requested, points: 60}]\n"
        "      stages:\n"
        "        - {name: subscriber}\n"
        "        - {name: lead, at: 10, actions: [{emit: Became Lead}]}\n"
        "        - {name: MQL, at: 50, actions: [{emit: Lead Qualified}]}\n"
    )
    [decision] = run_all(model, [event("track", T0, "Demo Requested")])
    assert [(m.from_stage, m.to_stage) for m in decision.stage_changes] == [
        ("subscriber", "lead"),
        ("lead", "MQL"),
    ]
    assert [e.name for e in decision.effects if isinstance(e, EmitEvent)] == [
        "Became Lead",
        "Lead Qualified",
    ]


def test_out_of_order_events_are_clamped_to_the_state_instant() -> None:
    model = engagement_model("        - {id: any_page, type: page, points: 1}\n")
    decisions = run_all(model, [page("/", T0 + 100), page("/", T0)])
    assert decisions[-1].changes[0].at == T0 + 100
