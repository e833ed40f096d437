"""docs/journeys.md documents every journey step type, condition kind and key the code accepts."""

from __future__ import annotations

import re
from pathlib import Path

from leadloop.journeys.fields import SCHEMA
from leadloop.journeys.model import ENGAGEMENTS, OUTCOMES, STEP_TYPES, TEST_KINDS

DOC = (Path(__file__).resolve().parents[3] / "docs" / "journeys.md").read_text(encoding="utf-8")
CODE_WORDS = set(re.findall(r"`([^`]+)`", DOC))


def _documented(word: str) -> bool:
    return (
        word in CODE_WORDS
        or f"`{word}`" in DOC
        or re.search(rf"\| `?{re.escape(word)}`? \|", DOC) is not None
    )


def test_every_step_type_is_documented() -> None:
    for step_type in STEP_TYPES:
        assert f"| `{step_type}` |" in DOC, step_type


def test_every_key_is_documented() -> None:
    missing = sorted(
        f"{section}.{key}"
        for section, (required, optional) in SCHEMA.items()
        for key in required | optional
        if not _documented(key)
    )
    assert not missing, missing


def test_condition_kinds_engagements_and_outcomes_are_documented() -> None:
    for word in (*TEST_KINDS, *ENGAGEMENTS, *OUTCOMES):
        assert _documented(word), word
