"""A journey's version: what pins running instances to the definition they started on. The
`${VAR}` values a journey reads count in it, as they do in a scoring model's version."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.journeys.config import parse_journeys
from leadloop.journeys.model import Journey, SendStep, WaitStep
from leadloop.playbook import load_playbook
from leadloop.playbook.load import parse_playbook
from tests.unit.journeys.test_config import BASE

EXAMPLE = Path(__file__).parents[3] / "examples" / "playbook.yaml"

FLOW = """
journeys:
  templates:
    email: [guide, case_study]
  flows:
    - id: nurture
      entry: { event: Signed Up }
      steps:
        - { id: hello, type: send, channel: email, template: '${FIRST_TEMPLATE}', next: pause }
        - { id: pause, type: wait, duration: '${PAUSE:-48h}', next: again }
        - { id: again, type: send, channel: email, template: case_study }
"""


def nurture(env: dict[str, str], flow: str = FLOW) -> Journey:
    journey = parse_journeys(parse_playbook(BASE + flow, "pb.yaml", env=env)).journey("nurture")
    assert journey is not None
    return journey


@pytest.mark.parametrize(
    "other", [{"FIRST_TEMPLATE": "case_study"}, {"FIRST_TEMPLATE": "guide", "PAUSE": "24h"}]
)
def test_a_variable_the_journey_reads_is_part_of_its_version(other: dict[str, str]) -> None:
    """The stored definition holds the values: another value is another definition, so another
    version, and instances that started on the old one keep it."""
    guide = nurture({"FIRST_TEMPLATE": "guide"})
    hello = guide.step("hello")
    assert isinstance(hello, SendStep) and hello.template == "guide"
    assert guide.definition["steps"][0]["template"] == "guide"
    assert nurture({"FIRST_TEMPLATE": "guide"}).version == guide.version
    changed = nurture(other)
    assert changed.version != guide.version
    # A value the text already gives (the default) is the same journey as that value set.
    same = nurture({"FIRST_TEMPLATE": "guide", "PAUSE": "48h"})
    pause = same.step("pause")
    assert isinstance(pause, WaitStep) and pause.duration == 48 * 3600.0
    assert same.version == guide.version


def test_the_version_holds_no_value() -> None:
    journey = nurture({"FIRST_TEMPLATE": "guide", "PAUSE": "1234567s"})
    assert "1234567" not in journey.version and len(journey.version) == 16


def test_a_journey_without_variables_keeps_its_version() -> None:
    """Upgrading must not move every running instance onto a "new" version of the same journey:
    one that substitutes nothing keeps the version it had before values counted, byte for byte,
    whatever the environment holds (the example's webhook URL is outside the journey)."""
    for env in ({}, {"LEADLOOP_SALES_WEBHOOK_URL": "https://x.test", "FIRST_TEMPLATE": "x"}):
        (journey,) = parse_journeys(load_playbook(EXAMPLE, env=env)).journeys
        assert (journey.id, journey.version) == ("lead_nurture", "170c1f2728832c3f")
    # A `$${` escape is literal text, not a substitution.
    escaped = FLOW.replace("'${FIRST_TEMPLATE}'", "guide").replace(
        "'${PAUSE:-48h}'", "48h, name: 'costs $${X}'"
    )
    assert nurture({}, escaped).version == "c1873e8d9b820508"
