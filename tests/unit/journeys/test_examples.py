"""examples/journeys.yaml is the journeys section of examples/playbook.yaml, kept as a fragment
to merge (its header says so; docs/journeys.md points to it as the seed journey, and the seed
journey's contract tests run it inside the example playbook). Parsed and compared as data, so
an edit to one file that misses the other fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), name
    return data


def test_the_journeys_fragment_is_the_example_playbooks_journeys_section() -> None:
    fragment = _load("journeys.yaml")
    playbook = _load("playbook.yaml")
    assert list(fragment) == ["journeys"]
    section = dict(fragment["journeys"])
    # The one difference: the fragment declares the template names its sends use, which the
    # playbook declares in its channels section. They must name the same templates.
    declared = section.pop("templates")
    assert "templates" not in playbook["journeys"]
    assert section == playbook["journeys"]
    channel_templates = playbook["channels"]["templates"]
    assert {channel: sorted(names) for channel, names in declared.items()} == {
        channel: sorted(templates) for channel, templates in channel_templates.items()
    }
