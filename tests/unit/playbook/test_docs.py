"""docs/playbook.md documents every playbook key, operator and computed field the code accepts,
and nothing the code does not."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leadloop.playbook.fields import SCHEMA
from leadloop.scoring.model import OPERATORS, VIRTUAL_FIELDS

DOC = (Path(__file__).parents[3] / "docs" / "playbook.md").read_text(encoding="utf-8")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


def section(title: str) -> str:
    """The text under the heading that names `title` in backticks, up to the next heading."""
    found = re.search(rf"^#+ .*`{re.escape(title)}`.*$", DOC, re.MULTILINE)
    assert found, f"docs/playbook.md has no heading for `{title}`"
    rest = DOC[found.end() :]
    end = re.search(r"^#", rest, re.MULTILINE)
    return rest if end is None else rest[: end.start()]


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_every_key_is_documented_in_its_section(name: str) -> None:
    required, optional = SCHEMA[name]
    documented = set(ROW.findall(section(name)))
    assert documented == required | optional


def test_every_operator_is_documented() -> None:
    found = re.search(r"^## Operators$(.*?)(^#|\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert found
    assert set(ROW.findall(found.group(1))) == set(OPERATORS)


@pytest.mark.parametrize("field", VIRTUAL_FIELDS)
def test_every_computed_field_is_documented(field: str) -> None:
    assert f"`{field}`" in DOC
