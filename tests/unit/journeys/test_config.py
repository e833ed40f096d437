"""Validation of the journeys section: file/line errors for shape and graph mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.errors import PlaybookError
from leadloop.journeys.config import journey_from_definition, parse_journeys
from leadloop.journeys.model import SendStep, StageTrigger, WaitForStep
from leadloop.playbook.load import parse_playbook

ROOT = Path(__file__).resolve().parents[3]


def _without_journeys(text: str) -> str:
    """The example playbook minus its `journeys` section (each test adds its own)."""
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        if line.startswith("journeys:"):
            inside = True
            continue
        if inside and line.strip() and not line.startswith((" ", "#")):
            inside = False
        if not inside:
            kept.append(line)
    return "".join(kept)


BASE = _without_journeys((ROOT / "examples" / "playbook.yaml").read_text(encoding="utf-8"))
SEED = (ROOT / "examples" / "journeys.yaml").read_text(encoding="utf-8")


def load(fragment: str) -> object:
    return parse_journeys(parse_playbook(BASE + fragment, "pb.yaml", env={}))


def error(fragment: str) -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        load(fragment)
    return caught.value


def test_the_seed_journey_parses() -> None:
    journeys = load(SEED)
    journey = journeys.journey("lead_nurture")  # type: ignore[attr-defined]
    assert journey is not None
    assert journey.trigger == StageTrigger("lead", ("lead",))
    assert isinstance(journey.step("wait_click"), WaitForStep)
    switch = journey.step("switch_channel")
    assert isinstance(switch, SendStep) and switch.channels == ("whatsapp", "instagram")
    assert journeys.policy.quiet_hours is not None  # type: ignore[attr-defined]
    again = journey_from_definition(journey.definition, journey.id, journey.version)
    assert again.steps == journey.steps and again.version == journey.version


FLOW = """
journeys:
  templates: {{ email: [a] }}
  flows:
    - id: j
      entry: {{ event: Go }}
      steps:
{steps}
"""


def flow(steps: str) -> str:
    return FLOW.format(steps=steps)


def test_dangling_reference_names_file_line_and_field() -> None:
    err = error(flow("        - { id: s, type: send, channel: email, template: a, next: nowhere }"))
    assert err.file == "pb.yaml" and err.line is not None
    assert err.field.endswith("steps[0].next") and "nowhere" in err.message


def test_unreachable_step() -> None:
    err = error(
        flow(
            "        - { id: s, type: send, channel: email, template: a }\n"
            "        - { id: lonely, type: exit }"
        )
    )
    assert "unreachable" in err.message and err.field.endswith("steps[1].id")


def test_loop_without_a_wait() -> None:
    err = error(
        flow(
            "        - { id: s, type: send, channel: email, template: a, next: b }\n"
            "        - id: b\n          type: branch\n          if: [{ trait: x, op: exists }]\n"
            "          then: s\n          else: s"
        )
    )
    assert "loop without a wait" in err.message


def test_a_loop_through_a_wait_is_fine() -> None:
    load(
        flow(
            "        - { id: s, type: send, channel: email, template: a, next: w }\n"
            "        - { id: w, type: wait, duration: 7d, next: s }"
        )
    )


@pytest.mark.parametrize("wait", ["duration: 0s", "duration: 0", "until_trait: renewal_date"])
def test_a_loop_through_a_wait_that_waits_at_most_once_is_a_loop_without_a_wait(
    wait: str,
) -> None:
    # Back at such a wait, its instant has passed: the runner goes on, sending on every pass.
    err = error(
        flow(
            "        - { id: s, type: send, channel: email, template: a, next: w }\n"
            f"        - {{ id: w, type: wait, {wait}, next: s }}"
        )
    )
    assert "loop without a wait" in err.message and err.line is not None


def test_unknown_template_unknown_key_and_unknown_stage() -> None:
    assert (
        "unknown template 'zz'"
        in error(flow("        - { id: s, type: send, channel: email, template: zz }")).message
    )
    assert (
        "unknown key"
        in error(
            flow("        - { id: s, type: send, channel: email, template: a, bogus: 1 }")
        ).message
    )
    bad_stage = SEED.replace("to: [MQL, SQL, opportunity, customer]", "to: [Hot]")
    assert "no stage 'Hot'" in error(bad_stage).message


@pytest.mark.parametrize("duration", [".inf", "-1", ".nan", "soon"])
def test_a_wait_must_be_a_finite_duration(duration: str) -> None:
    # `.inf` would park every instance on a timer that never falls due.
    err = error(flow(f"        - {{ id: w, type: wait, duration: {duration} }}"))
    assert err.field.endswith("steps[0].duration") and "expected a duration" in err.message


@pytest.mark.parametrize(("written", "minutes"), [("10:00", 600), ("9:30", 570), ('"09:30"', 570)])
def test_wait_until_time_reads_an_unquoted_time_as_quiet_hours_do(
    written: str, minutes: int
) -> None:
    # YAML 1.1 reads an unquoted 10:00 as the number 600: it was "expected a string, got int".
    journeys = load(flow(f"        - {{ id: w, type: wait, until_time: {written} }}"))
    step = journeys.journeys[0].steps[0]  # type: ignore[attr-defined]
    assert step.until_time == minutes
    assert "until_time" in error(flow("        - { id: w, type: wait, until_time: 25:00 }")).field


def test_a_time_of_day_in_other_digits_is_an_error() -> None:
    # str.isdigit holds for '²', which int() refuses: a traceback, not an error.
    err = error(flow("        - { id: w, type: wait, until_time: '09:\u00b2' }"))
    assert err.field.endswith("steps[0].until_time") and "local time" in err.message
    err = error("journeys:\n  policy: { quiet_hours: { start: '2\u00b2:00', end: '08:00' } }\n")
    assert err.field == "journeys.policy.quiet_hours.start" and "local time" in err.message


@pytest.mark.parametrize(
    ("step", "field"),
    [
        (
            "{ id: s, type: split, paths: [{ weight: 1.0e+308 }, { weight: 1.0e+308 }] }",
            "steps[0].paths",
        ),
        (
            "{ id: s, type: send, channel: email, variants: "
            "[{ template: a, weight: 1.0e+308 }, { template: b, weight: 1.0e+308 }] }",
            "steps[0].variants",
        ),
    ],
)
def test_weights_that_add_up_to_infinity_are_an_error(step: str, field: str) -> None:
    # Every share of an infinite total is 0: all profiles took the last path or variant.
    err = error(flow(f"        - {step}").replace("[a]", "[a, b]"))
    assert err.field.endswith(field) and "too large" in err.message


def test_weekdays_are_day_names_or_their_starts() -> None:
    journeys = load(
        flow("        - { id: w, type: wait, until_time: '09:30', weekdays: [Fri, tues, monday] }")
    )
    step = journeys.journeys[0].steps[0]  # type: ignore[attr-defined]
    assert step.weekdays == (0, 1, 4)
    for wrong in ("monkey", "mo", "sundays", "frid ay"):
        text = f"        - {{ id: w, type: wait, until_time: '09:30', weekdays: ['{wrong}'] }}"
        err = error(flow(text))
        assert err.field.endswith("steps[0].weekdays") and repr(wrong) in err.message, wrong


def test_quiet_hours_that_start_and_end_together_are_an_error() -> None:
    err = error("journeys:\n  policy: { quiet_hours: { start: '21:00', end: '21:00' } }\n")
    assert err.field == "journeys.policy.quiet_hours.end" and "same time" in err.message


PING_PONG = """
journeys:
  flows:
    - id: ping
      entry: {{ event: Journey Profile Updated{ping_where} }}
      reentry: {ping_reentry}
      steps:
{ping_steps}
    - id: pong
      entry: {{ event: Journey Profile Updated }}
      reentry: always
      steps:
        - {{ id: mark, type: update_profile, add_tags: [pong] }}
"""


def ping_pong(
    ping_steps: str = "        - { id: mark, type: update_profile, add_tags: [ping] }",
    ping_reentry: str = "always",
    ping_where: str = "",
) -> str:
    return PING_PONG.format(ping_steps=ping_steps, ping_reentry=ping_reentry, ping_where=ping_where)


def test_two_journeys_entering_on_each_others_profile_updates_are_a_loop() -> None:
    """Each one's update enters the other, whose update enters the first again: one event and
    one instance after another for good (only a journey's own updates were left out)."""
    err = error(ping_pong())
    assert err.file == "pb.yaml" and err.line is not None and err.field.endswith("entry")
    assert "loop across journeys without a wait" in err.message
    assert "ping → pong → ping" in err.message or "pong → ping → pong" in err.message


def test_a_loop_across_journeys_is_found_through_branches_and_narrowed_entries() -> None:
    steps = (
        "        - id: b\n          type: branch\n          if: [{ trait: x, op: exists }]\n"
        "          then: mark\n          else: mark\n"
        "        - { id: mark, type: update_profile, add_tags: [ping] }"
    )
    where = ", where: [{ field: properties.journey, op: equals, value: pong }]"
    assert "loop across journeys" in error(ping_pong(steps, ping_where=where)).message


@pytest.mark.parametrize(
    ("steps", "reentry", "where"),
    [
        # Each profile enters `ping` once: the loop stops after one round.
        ("        - { id: mark, type: update_profile, add_tags: [ping] }", "once", ""),
        # At most once a day: a round a day, as a loop through a wait.
        ("        - { id: mark, type: update_profile, add_tags: [ping] }", "every 1d", ""),
        # A wait before the update: a round per wait, like a loop through a wait in a journey.
        (
            "        - { id: w, type: wait, duration: 1h, next: mark }\n"
            "        - { id: mark, type: update_profile, add_tags: [ping] }",
            "always",
            "",
        ),
        # A wait after it: `ping` is still running when `pong`'s update comes, so it does not
        # enter again.
        (
            "        - { id: mark, type: update_profile, add_tags: [ping], next: w }\n"
            "        - { id: w, type: wait, duration: 1h }",
            "always",
            "",
        ),
        # `ping` enters only on another journey's updates.
        (
            "        - { id: mark, type: update_profile, add_tags: [ping] }",
            "always",
            ", where: [{ field: properties.journey, op: equals, value: onboarding }]",
        ),
    ],
)
def test_journeys_updating_each_other_with_a_wait_or_a_re_entry_limit_are_fine(
    steps: str, reentry: str, where: str
) -> None:
    load(ping_pong(steps, reentry, where))


STAGE_PING_PONG = """
journeys:
  flows:
    - id: promote
      entry: { stage: { model: lead, to: lead } }
      reentry: always
      steps:
        - { id: up, type: update_profile, stage: SQL }
    - id: demote
      entry: { stage: { model: lead, to: SQL } }
      reentry: always
      steps:
        - { id: down, type: update_profile, stage: lead }
"""


def test_journeys_setting_the_stages_that_enter_each_other_are_a_loop() -> None:
    assert "loop across journeys without a wait" in error(STAGE_PING_PONG).message
    load(STAGE_PING_PONG.replace("to: SQL }", "to: customer }"))


def always(*flows: tuple[str, str, tuple[str, ...]]) -> str:
    """A `journeys` section of `reentry: always` flows: (id, entry, steps)."""
    text = "\njourneys:\n  flows:\n"
    for flow_id, entry, steps in flows:
        text += f"    - id: {flow_id}\n      entry: {entry}\n      reentry: always\n      steps:\n"
        text += "".join(f"        - {step}\n" for step in steps)
    return text


SEGMENT_TOGGLE = always(
    (
        "vip",
        "{ segment: [{ trait: vip, op: equals, value: true }] }",
        (
            "{ id: leave, type: update_profile, traits: { vip: false }, next: back }",
            "{ id: back, type: update_profile, traits: { vip: true } }",
        ),
    )
)


def test_a_journey_taking_a_profile_out_of_its_segment_and_back_in_is_a_loop() -> None:
    """Its own updates are segment changes like any: out, then in, is an entry, and the
    instance has ended by then."""
    err = error(SEGMENT_TOGGLE)
    assert err.file == "pb.yaml" and err.line is not None and err.field.endswith("entry")
    assert "loop across journeys without a wait: vip → vip" in err.message


SEGMENT_PING_PONG = always(
    *(
        (
            side,
            f"{{ segment: [{{ trait: side, op: equals, value: {side} }}] }}",
            (f"{{ id: flip, type: update_profile, traits: {{ side: {other} }} }}",),
        )
        for side, other in (("ping", "pong"), ("pong", "ping"))
    )
)
STAGE_TOGGLE = always(
    (
        "sql",
        "{ stage: { model: lead, to: SQL } }",
        (
            "{ id: down, type: update_profile, stage: lead, next: up }",
            "{ id: up, type: update_profile, stage: SQL }",
        ),
    )
)


def test_segments_and_stages_that_the_journeys_own_updates_reenter_are_loops() -> None:
    # Entering `ping` on side ping puts the profile out of `pong`; `ping` puts it in, and back.
    assert "loop across journeys without a wait" in error(SEGMENT_PING_PONG).message
    assert "sql → sql" in error(STAGE_TOGGLE).message


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("reentry: always", "reentry: once"),
        ("reentry: always", "reentry: every 1d"),
        # A wait between the two updates: a round per wait.
        ("next: back }", "next: w }\n        - { id: w, type: wait, duration: 1h, next: back }"),
        # Out only: the journey never puts the profile back in.
        ("traits: { vip: true }", "traits: { seen: true }"),
        # Back in only if a score no playbook text fixes holds: not a proven loop.
        (
            "[{ trait: vip, op: equals, value: true }]",
            "[{ trait: vip, op: equals, value: true }, { score: lead, op: gte, value: 10 }]",
        ),
    ],
)
def test_segment_journeys_whose_updates_cannot_be_shown_to_reenter_are_fine(
    old: str, new: str
) -> None:
    assert old in SEGMENT_TOGGLE
    load(SEGMENT_TOGGLE.replace(old, new))


def test_stage_journeys_that_do_not_move_off_and_back_are_fine() -> None:
    load(STAGE_TOGGLE.replace("stage: lead, next: up", "traits: { a: 1 }, next: up"))
    load(STAGE_TOGGLE.replace("reentry: always", "reentry: once"))


def test_tags_toggled_and_stages_moved_back_from_a_named_stage_are_loops() -> None:
    tags = always(
        (
            "hot",
            "{ segment: [{ trait: tags, op: equals, value: hot }] }",
            (
                "{ id: cool, type: update_profile, remove_tags: [hot], next: heat }",
                "{ id: heat, type: update_profile, add_tags: [hot, again] }",
            ),
        )
    )
    assert "hot → hot" in error(tags).message
    assert "sql → sql" in error(STAGE_TOGGLE.replace("to: SQL", "to: SQL, from: lead")).message
    # A move back from a stage the entry does not name is no entry.
    load(STAGE_TOGGLE.replace("to: SQL", "to: SQL, from: MQL"))


SILENCE = """
journeys:
  templates:
    email: [hi]
  flows:
    - id: quiet
      entry:
        segment:
          - { event: Visited, within: 30d, not: true }
      steps:
        - { id: hi, type: send, channel: email, template: hi }
"""


def test_a_silence_segment_a_new_profile_is_already_in_is_a_warning_with_its_line() -> None:
    """ "No visit in 30 days" holds for a profile that never visited: each new profile enters
    at its first event, which is seldom what a win-back means. A warning: it is valid."""
    journeys = load(SILENCE)
    (warning,) = journeys.warnings  # type: ignore[attr-defined]
    assert warning.field == "journeys.flows[0].entry.segment"
    lines = (BASE + SILENCE).splitlines()
    assert warning.line == lines.index("          - { event: Visited, within: 30d, not: true }") + 1
    assert "a profile that never had these events" in warning.message
    after_activity = SILENCE.replace(
        "          - { event: Visited, within: 30d, not: true }",
        "          - { event: Visited }\n          - { event: Visited, within: 30d, not: true }",
    )
    assert load(after_activity).warnings == ()  # type: ignore[attr-defined]
    recent = SILENCE.replace(", not: true", "")
    assert load(recent).warnings == ()  # type: ignore[attr-defined]


# The example model's `senior_title` fit rule gives 15 points to a VP title, none to an intern.
# An update's traits are applied before its own event is scored: the `promote` title counts
# at `promote`'s event, the last of the run.
SCORE_TOGGLE = always(
    (
        "hot",
        "{ score: { model: lead, op: gte, value: 50 } }",
        (
            "{ id: demote, type: update_profile, traits: { title: intern }, next: promote }",
            "{ id: promote, type: update_profile, traits: { title: VP } }",
        ),
    )
)


def test_a_journey_moving_its_own_score_down_and_up_across_its_entry_is_a_loop() -> None:
    """Each run takes a profile with 35 to 50 points besides the title under 50 and back over
    it: a crossing, and the run has ended by then, so the next starts, for good."""
    err = error(SCORE_TOGGLE)
    assert err.file == "pb.yaml" and err.line is not None and err.field.endswith("entry")
    assert "loop across journeys without a wait: hot → hot" in err.message
    assert "lead score" in err.message and "35 to 50" in err.message


def test_engagement_points_on_the_journeys_own_updates_can_make_the_loop() -> None:
    rules = (
        "        - id: nudged_down\n          type: internal\n          event: Journey Profile "
        "Updated\n          where:\n            - { field: properties.step, op: equals, value: "
        "down }\n          points: -20\n"
        "        - id: nudged_up\n          type: internal\n          event: Journey Profile "
        "Updated\n          where:\n            - { field: properties.step, op: equals, value: "
        "up }\n          points: 20\n"
    )
    anchor = "      decay:\n"
    assert anchor in BASE
    base = BASE.replace(anchor, rules + anchor, 1)
    flows = always(
        (
            "nudge",
            "{ score: { model: lead, op: lt, value: 10 } }",
            (
                "{ id: up, type: update_profile, traits: { seen: 1 }, next: down }",
                "{ id: down, type: update_profile, traits: { seen: 2 } }",
            ),
        )
    )
    with pytest.raises(PlaybookError) as caught:
        parse_journeys(parse_playbook(base + flows, "pb.yaml", env={}))
    assert "nudge → nudge" in caught.value.message
    # Awarded once, or fading (the model's half-life), the points do not come back the same
    # each run: no loop is shown.
    once = base.replace("points: 20\n", "points: 20\n          once: true\n")
    fading = base.replace("      decay:\n", "      decay:\n        half_life: 7d\n", 1)
    for text in (once, fading):
        parse_journeys(parse_playbook(text + flows, "pb.yaml", env={}))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("reentry: always", "reentry: once"),
        # A wait between the two updates: a round per wait.
        (
            "next: promote }",
            "next: w }\n        - { id: w, type: wait, duration: 1h, next: promote }",
        ),
        # The same title on both steps: the score does not move within a run.
        ("title: intern", "title: CTO"),
        # VP first, then intern: the run ends under its entry, out until an event from outside
        # brings the profile back over it.
        (
            "{ title: intern }, next: promote }\n"
            "        - { id: promote, type: update_profile, traits: { title: VP } }",
            "{ title: VP }, next: promote }\n"
            "        - { id: promote, type: update_profile, traits: { title: intern } }",
        ),
        # A trait no fit rule reads.
        ("title: intern", "seen: 1"),
        # `job_title` counts only without a `title`, which no step writes: not shown.
        ("title: ", "job_title: "),
    ],
)
def test_score_journeys_whose_updates_cannot_be_shown_to_recross_are_fine(
    old: str, new: str
) -> None:
    assert old in SCORE_TOGGLE
    load(SCORE_TOGGLE.replace(old, new))
