"""Every CLI command and option is documented in docs/cli.md (the docs are tested)."""

from __future__ import annotations

import argparse
from pathlib import Path

from leadloop.cli import build_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()


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
    missing = []
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
