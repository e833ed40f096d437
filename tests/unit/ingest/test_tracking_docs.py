"""docs/tracking.md names every answer code of the tracking API and the signed webhooks, and
every path: a client's author reads them there, not in the source."""

from __future__ import annotations

import re
from pathlib import Path

from leadloop.ingest import parse

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "tracking.md").read_text(encoding="utf-8")


def answer_codes() -> set[str]:
    sources = (ROOT / "leadloop" / "ingest").glob("*.py")
    return {
        code
        for source in sources
        for code in re.findall(r'Rejected\(\s*"(\w+)"', source.read_text(encoding="utf-8"))
    }


def test_every_answer_code_is_documented() -> None:
    codes = answer_codes()
    assert "overloaded" in codes and "missing_id" in codes  # the search still finds them
    assert sorted(code for code in codes if f"`{code}`" not in DOC) == []


def test_every_path_is_documented() -> None:
    lists = re.findall(r"`/v1/\{([a-z,]+)\}`", DOC)
    assert len(lists) >= 2, "the names and the short forms, each as `/v1/{a,b,...}`"
    names, shorts = (sorted(found.split(",")) for found in lists[:2])
    assert names == sorted([*parse.SINGLE_TYPES, "batch"])
    assert shorts == sorted([*parse.SHORT_TYPES, "b"])
    assert "`/v1/import`" in DOC and "`/v1/m`" in DOC
