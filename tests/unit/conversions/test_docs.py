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


def test_the_example_playbooks_conversion_variables_are_documented() -> None:
    example = (ROOT / "examples" / "playbook.yaml").read_text(encoding="utf-8")
    conversions = example[example.index("\nconversions:") :]
    names = set(re.findall(r"\$\{(LEADLOOP_GOOGLE_ADS_\w+)", conversions))
    assert len(names) == 7
    assert all(f"`{name}`" in DOC for name in names)
