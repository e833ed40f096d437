"""docs/conversions.md documents every key of the playbook's `conversions` section, every
destination type and identifier, and the environment variables of the example playbook."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leadloop.conversions.config import IDENTIFIERS, PLATFORMS, SCHEMA

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "conversions.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


def section(title: str) -> str:
    found = re.search(rf"^#+ .*`{re.escape(title)}`.*$", DOC, re.MULTILINE)
    assert found, f"docs/conversions.md has no heading for `{title}`"
    rest = DOC[found.end() :]
    end = re.search(r"^## ", rest, re.MULTILINE)
    return rest if end is None else rest[: end.start()]


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_every_key_is_documented_in_its_section(name: str) -> None:
    required, optional = SCHEMA[name]
    documented = set(ROW.findall(section(name))) - {n for n in ROW.findall(DOC) if "LEADLOOP" in n}
    assert documented == required | optional


def test_destination_types_and_identifiers_are_documented() -> None:
    types = section("conversions.destinations[]")
    assert all(f"`{platform}`" in types for platform in PLATFORMS)
    identifiers = section("conversions.mappings[]")
    assert all(f"`{name}`" in identifiers for name in IDENTIFIERS)


def example_variables() -> list[tuple[str, str, str, str]]:
    """(destination id, key, variable, default) of every `${LEADLOOP_...:-default}` in the
    example playbook's `conversions` section."""
    example = (ROOT / "examples" / "playbook.yaml").read_text(encoding="utf-8")
    start = example.index("\nconversions:") + 1
    following = re.compile(r"^\S", re.MULTILINE).search(example, example.index("\n", start) + 1)
    conversions = example[start : following.start() if following else len(example)]
    found = []
    destination = ""
    for line in conversions.splitlines():
        named = re.match(r"\s*- id: (\S+)", line)
        if named:
            destination = named.group(1)
        for key, name, default in re.findall(r"(\w+): \$\{(LEADLOOP_\w+)(?::-([^}]*))?\}", line):
            found.append((destination, key, name, default))
    # A variable written any other way (not as a key's whole value) would go unchecked.
    assert len(found) == conversions.count("${LEADLOOP_")
    return found


def test_every_variable_of_the_example_playbook_is_documented_with_its_default() -> None:
    rows = {
        name: (sets, default)
        for name, sets, default in re.findall(
            r"^\|\s*`(LEADLOOP_\w+)`\s*\|([^|]*)\|([^|]*)\|\s*$",
            section("examples/playbook.yaml"),
            re.MULTILINE,
        )
    }
    variables = example_variables()
    assert len(variables) >= 15
    for destination, key, name, default in variables:
        assert name in rows, f"docs/conversions.md has no row for {name}"
        sets, documented = rows[name]
        assert f"`{destination}` `{key}`" in sets, f"{name} sets {destination}.{key}"
        expected = f"`{default}`" if default else "empty"
        assert documented.strip().startswith(expected), f"{name} defaults to {default!r}"
