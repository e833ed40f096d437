"""The docs stand alone: they cite no research note. The notes live in a folder beside the
repository that users do not get, so such a citation pointed at nothing; a fact is stated in
the doc, with the platform's own documentation as its source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
NOTE = re.compile(r"research/|\b(?:capi|ml-data|anchors-peers|stack-perf|clients|aesthetics)\.md\b")


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_no_doc_cites_a_research_note(doc: Path) -> None:
    cited = [
        f"{doc.relative_to(ROOT)}:{number}: {line.strip()}"
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if NOTE.search(line)
    ]
    assert not cited, "\n".join(cited)
