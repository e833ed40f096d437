"""Every environment variable the engine reads, and every one the example playbook names, is
documented: an operator configures from the docs, not from `grep` in the source."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
ALL_DOCS = "\n".join(
    path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
)
VARIABLE = re.compile(r"LEADLOOP_[A-Z0-9_]*[A-Z0-9]")


def engine_variables() -> set[str]:
    """Variables the code reads by name (the playbook's are read through `${NAME}` instead)."""
    return {
        name
        for source in (ROOT / "leadloop").rglob("*.py")
        for name in re.findall(r'"(LEADLOOP_[A-Z0-9_]+)"', source.read_text(encoding="utf-8"))
    }


def test_every_variable_the_engine_reads_is_in_the_environment_table() -> None:
    table = CLI_DOC[CLI_DOC.index("## Environment") :].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(LEADLOOP_\w+)` \|", table, re.MULTILINE))
    assert {"LEADLOOP_HOST", "LEADLOOP_MAX_PENDING_EVENTS"} <= engine_variables()
    assert sorted(engine_variables() - documented) == []


def test_every_variable_of_the_example_playbook_is_documented() -> None:
    example = (ROOT / "examples" / "playbook.yaml").read_text(encoding="utf-8")
    named = set(re.findall(r"\$\{(LEADLOOP_\w+)", example))
    assert "LEADLOOP_SALES_WEBHOOK_URL" in named
    documented = set(VARIABLE.findall(ALL_DOCS))
    assert sorted(named - documented) == []
