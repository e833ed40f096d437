"""The metrics report as text: a figure that cannot be told is `unknown` with its reason, and
names from playbooks and events cannot drive the reader's terminal."""

from __future__ import annotations

from typing import Any

from leadloop.analytics.metrics import JourneyCounts, MessageCounts
from leadloop.analytics.table import render_report


def body(**parts: Any) -> dict[str, Any]:
    return {
        "since": 0.0,
        "until": 86399.999,
        "messages": {"by_channel": [], "by_template": []},
        "journeys": [],
        "funnel": [],
        "revenue": [],
        "acquisition": [],
        **parts,
    }


def test_rates_over_nobody_and_a_lift_without_holdout_are_unknown_with_why() -> None:
    queued = MessageCounts("email", None, None, 3, 0, 0, 0, 0, 0, 0, 0).report()
    journey = JourneyCounts("welcome")
    journey.treated.entered, journey.treated.converted = 4, 1
    text = render_report(
        body(messages={"by_channel": [queued], "by_template": []}, journeys=[journey.report()]),
        "default",
    )
    assert text.startswith(
        "Metrics of workspace default from 1970-01-01 00:00:00 to 1970-01-01 23:59:59 UTC"
    )
    assert "unknown (nothing sent)" in text and "unknown (nothing delivered)" in text
    assert "unknown (nothing opened)" in text
    assert "25.0 %" in text and "unknown (no entrants)" in text
    assert "unknown (no holdout entrants)" in text
    assert "nothing in this window" in text  # the sections with no rows


def test_control_characters_in_names_are_escaped() -> None:
    row = MessageCounts("email", "\x1b[2Jwelcome", None, 1, 1, 1, 0, 0, 0, 0, 0).report()
    text = render_report(body(messages={"by_channel": [], "by_template": [row]}), "w\x07")
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2Jwelcome" in text and "workspace w\\x07" in text
    assert "(none)" in text  # a message with no journey
