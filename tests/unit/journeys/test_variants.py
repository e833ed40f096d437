"""Send steps with a variant set: the choice (by weight, stable per profile), what a send
records, and validation with file/line errors."""

from __future__ import annotations

from collections import Counter

import pytest

from leadloop.journeys import decide
from leadloop.journeys.hashing import choose_variant
from leadloop.journeys.model import (
    EventTrigger,
    Journey,
    Membership,
    QueueSend,
    RecordPolicy,
    SendStep,
    Variant,
)
from leadloop.policy.model import PolicyConfig, QuietHours
from leadloop.scoring.model import EventFilter
from tests.unit.journeys.test_config import error, flow, load
from tests.unit.journeys.test_decide import T0, FakeFacts

AB = (Variant("guide_a", 1), Variant("guide_b", 3))


def test_the_choice_follows_the_weights_over_many_profiles() -> None:
    picks = Counter(AB[choose_variant(AB, "j", "send", f"p{i}")].template for i in range(8000))
    assert 0.72 < picks["guide_b"] / 8000 < 0.78
    even = (Variant("x", 2), Variant("y", 2), Variant("z", 2))
    thirds = Counter(choose_variant(even, "j", "send", f"p{i}") for i in range(6000))
    assert all(1800 < count < 2200 for count in thirds.values())


def test_the_choice_is_stable_for_a_profile_and_independent_of_other_steps() -> None:
    first = [choose_variant(AB, "j", "send", f"p{i}") for i in range(500)]
    assert first == [choose_variant(AB, "j", "send", f"p{i}") for i in range(500)]
    # Another step (or journey) draws again: its variant is not tied to this one's.
    other = [choose_variant(AB, "j", "other", f"p{i}") for i in range(500)]
    assert other != first


def journey(policy_step: SendStep) -> Journey:
    return Journey(
        id="j", version="v1", trigger=EventTrigger(EventFilter(names=("Go",))), steps=(policy_step,)
    )


def test_the_send_records_the_chosen_template_deferred_or_queued() -> None:
    step = SendStep("send", ("email",), "", variants=AB)
    j = journey(step)
    for i in range(50):
        pid = f"p{i}"
        chosen = AB[choose_variant(AB, "j", "send", pid)].template
        _m, advance = decide.enter_journey(
            j, Membership(), "ws", pid, f"m{i}", FakeFacts(), PolicyConfig(), T0
        )
        (queued,) = [e for e in advance.effects if isinstance(e, QueueSend)]
        assert queued.template == chosen and queued.variant
        assert f"email {chosen} (variant" in advance.path[1].detail
    # Quiet hours defer the send; the deferral records the same variant it will send.
    quiet = PolicyConfig(quiet_hours=QuietHours(start=0, end=24 * 60 - 1))
    _m, advance = decide.enter_journey(j, Membership(), "ws", "p0", "m0", FakeFacts(), quiet, T0)
    (deferred,) = [e for e in advance.effects if isinstance(e, RecordPolicy)]
    assert deferred.template == AB[choose_variant(AB, "j", "send", "p0")].template


def test_a_plain_template_is_not_marked_as_a_variant() -> None:
    j = journey(SendStep("send", ("email",), "a"))
    _m, advance = decide.enter_journey(
        j, Membership(), "ws", "p", "m", FakeFacts(), PolicyConfig(), T0
    )
    (queued,) = [e for e in advance.effects if isinstance(e, QueueSend)]
    assert queued.template == "a" and not queued.variant


VARIANTS = """        - id: s
          type: send
          channel: email
{body}"""


def test_a_variant_set_parses() -> None:
    journeys = load(
        flow(
            VARIANTS.format(
                body="          variants:\n"
                "            - { template: a, weight: 1 }\n"
                "            - { template: b, weight: 2.5 }"
            )
        ).replace("email: [a]", "email: [a, b]")
    )
    step = journeys.journey("j").step("s")  # type: ignore[attr-defined]
    assert step == SendStep("s", ("email",), "", variants=(Variant("a", 1), Variant("b", 2.5)))
    thompson = load(
        flow(
            VARIANTS.format(
                body="          selection: thompson\n          variants:\n"
                "            - { template: a }\n            - { template: b }"
            )
        ).replace("email: [a]", "email: [a, b]")
    )
    assert thompson.journey("j").step("s").selection == "thompson"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            "          variants:\n            - { template: a, weight: 1 }\n"
            "            - { template: zz, weight: 1 }",
            "steps[0].variants[1].template",
            "unknown template 'zz' for email",
        ),
        ("          variants: []", "steps[0].variants", "list at least one variant"),
        (
            "          variants:\n            - { template: a, weight: 0 }",
            "steps[0].variants[0].weight",
            "must be greater than 0",
        ),
        (
            "          variants:\n            - { template: a, weight: -2 }",
            "steps[0].variants[0].weight",
            "must be greater than 0",
        ),
        (
            "          variants:\n            - { template: a }",
            "steps[0].variants[0].weight",
            "missing required field",
        ),
        (
            "          template: a\n          variants:\n            - { template: a, weight: 1 }",
            "steps[0].variants",
            "exactly one of `template` and `variants`",
        ),
        ("          next: null", "steps[0].template", "exactly one of `template` and `variants`"),
        (
            "          variants:\n            - { template: a, weight: 1 }\n"
            "            - { template: a, weight: 2 }",
            "steps[0].variants[1].template",
            "already a variant",
        ),
        (
            "          selection: bandit\n          variants:\n            - { template: a, weight: 1 }",
            "steps[0].selection",
            "expected one of weights, thompson",
        ),
        (
            "          selection: 3\n          variants:\n            - { template: a, weight: 1 }",
            "steps[0].selection",
            "expected a string",
        ),
        (
            "          selection: thompson\n          template: a",
            "steps[0].selection",
            "chooses among `variants`",
        ),
        (
            "          selection: thompson\n          variants:\n            - { template: a }",
            "steps[0].variants",
            "at least two variants to learn between",
        ),
        (
            # A weight a bandit would not use: the split it asks for would silently not happen.
            "          selection: thompson\n          variants:\n"
            "            - { template: a }\n            - { template: b, weight: 9 }",
            "steps[0].variants[1].weight",
            "not used by `selection: thompson`",
        ),
        (
            "          channel_order: preferred\n          template: a",
            "steps[0].channel_order",
            "at least two `channels`",
        ),
        (
            "          channel_order: best\n          template: a",
            "steps[0].channel_order",
            "expected one of listed, preferred",
        ),
    ],
)
def test_variant_set_errors_name_file_line_and_field(body: str, field: str, message: str) -> None:
    err = error(flow(VARIANTS.format(body=body)).replace("email: [a]", "email: [a, b]"))
    assert err.file == "pb.yaml" and err.line is not None
    assert err.field.endswith(field), err.field
    assert message in err.message, err.message
