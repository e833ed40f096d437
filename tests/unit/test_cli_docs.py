"""Every CLI command and option is documented in docs/cli.md (the docs are tested)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from leadloop.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "cli.md").read_text()


def commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[tuple[str, list[str]]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                options = [
                    opt
                    for a in sub._actions
                    for opt in a.option_strings
                    if opt.startswith("--") and opt != "--help"
                ]
                found.append((path, options))
                found.extend(commands(sub, path))
    return found


def test_every_command_and_option_is_documented() -> None:
    top = [opt for a in build_parser()._actions for opt in a.option_strings if a.dest != "help"]
    missing = [f"leadloop {opt}" for opt in top if f"`{opt}" not in DOC]
    for path, options in commands(build_parser()):
        if f"leadloop {path}" not in DOC:
            missing.append(f"leadloop {path}")
        missing.extend(f"leadloop {path} {opt}" for opt in options if f"`{opt}" not in DOC)
    assert not missing, f"docs/cli.md does not mention: {missing}"


def test_every_command_has_help() -> None:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{choice.dest} has no help text"


# Every `leadloop ...` a reader can copy from the docs, as written there.
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INVOCATION = re.compile(r"`(leadloop(?: [^`]*)?)`")


def invocations() -> list[tuple[str, str]]:
    return [
        (doc.name, found.group(1))
        for doc in DOCS
        if doc.name != "benchmarks.md"  # measurements, with the scripts' own options
        for found in INVOCATION.finditer(doc.read_text(encoding="utf-8"))
        if "COMMAND" not in found.group(1)
    ]


def invocation_problem(text: str) -> str | None:
    """What is wrong with a documented command line: an unknown command or option, or more
    arguments than the command takes. `[...]` marks optional parts and `a|b` alternatives
    (placeholders such as FILE stand for a value)."""
    tokens = text.replace("[", " ").replace("]", " ").split()[1:]
    parser = build_parser()
    while tokens:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not groups or tokens[0].startswith("-"):
            break
        sub = groups[0].choices.get(tokens[0])
        if sub is None:
            return f"no command {tokens[0]!r}"
        parser, tokens = sub, tokens[1:]
    options = {opt: a for a in parser._actions for opt in a.option_strings}
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    if any(a.nargs == argparse.REMAINDER or a.nargs == argparse.PARSER for a in positionals):
        return None  # the rest goes to another program (`leadloop bench NAME ...`)
    given = 0
    while tokens:
        token, tokens = tokens[0], tokens[1:]
        if not token.startswith("-"):
            given += 1
            continue
        action = options.get(token.split("=")[0])
        if action is None:
            return f"no option {token!r}"
        if action.nargs != 0 and "=" not in token and tokens:
            value, tokens = tokens[0], tokens[1:]
            unknown = [v for v in value.split("|") if action.choices and v not in action.choices]
            if unknown:
                return f"{token} has no choice {unknown}"
    if given > len(positionals):
        return f"{given} arguments, the command takes {len(positionals)}"
    return None


@pytest.mark.parametrize(("doc", "text"), invocations())
def test_every_documented_invocation_parses(doc: str, text: str) -> None:
    assert invocation_problem(text) is None, f"{doc}: `{text}`: {invocation_problem(text)}"


def test_the_invocation_check_finds_what_the_docs_could_get_wrong() -> None:
    assert (
        invocation_problem("leadloop playbook diff OLD NEW") == "2 arguments, the command takes 1"
    )
    assert invocation_problem("leadloop keys make") == "no command 'make'"
    assert invocation_problem("leadloop serve [--hots H]") == "no option '--hots'"
    assert invocation_problem("leadloop serve --clock fast") == "--clock has no choice ['fast']"
    assert invocation_problem("leadloop bench ingest --seconds 3") is None


def test_every_benchmark_is_listed() -> None:
    from leadloop.bench_cli import BENCHES

    section = DOC[DOC.index("### `leadloop bench`") :]
    assert [name for name in BENCHES if f"`{name}`" not in section] == []
