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


def test_every_audience_the_example_journeys_use_is_in_its_channels_section() -> None:
    # Without one, every `retarget` add failed as a dead letter ("no audience ... in the
    # channels section") where the README promises a disabled service and a warning at start.
    from leadloop.channels.config import parse_channels
    from leadloop.playbook import store

    playbook = store.build(store.read_sources(str(EXAMPLES / "playbook.yaml")), env={})
    channels = parse_channels(playbook.sections.get("channels"))
    steps = [s for f in _load("playbook.yaml")["journeys"]["flows"] for s in f["steps"]]
    used = {s.get("add") or s.get("remove") for s in steps if s["type"] == "audience"}
    assert used == {"ugc_retargeting"}
    for name in used:
        audience = channels.audience(name)
        assert audience is not None, name
        assert audience.disabled_reason == "audience_id, token not set"
    assert any(f"audience {name!r} is disabled" in str(w) for w in channels.warnings)


def test_an_audience_step_naming_an_undefined_audience_is_a_warning_with_its_line() -> None:
    # A warning, not an error: a playbook applied before this was checked must still load.
    from leadloop.playbook import store

    text = (EXAMPLES / "playbook.yaml").read_text(encoding="utf-8")
    assert text.count("add: ugc_retargeting") == 1
    broken = text.replace("add: ugc_retargeting", "add: ugc_retargetting")
    line = broken.splitlines().index("          add: ugc_retargetting") + 1
    playbook = store.build({"p.yaml": broken}, env={})
    found = [w for w in playbook.warnings if "ugc_retargetting" in w.message]
    assert len(found) == 1
    assert (found[0].file, found[0].line) == ("p.yaml", line)
    assert found[0].field == "journeys.flows[0].steps[5].add"
    assert "no audience 'ugc_retargetting' under channels.audiences" in found[0].message
    clean = store.build({"p.yaml": text}, env={})
    assert not [w for w in clean.warnings if "under channels.audiences" in w.message]
