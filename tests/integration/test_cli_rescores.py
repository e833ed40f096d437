"""`playbook diff` and `apply` say which scoring models applying would rescore, and why: a
changed rule, or a `${VAR}` whose value in this shell is not the one the profiles were scored
with (named, its value never printed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.cli import main
from tests.contract.conftest import EXAMPLE_PLAYBOOK, make_harness

RULE = "{ field: page.path, op: starts_with, value: /pricing }"


def _playbook(tmp_path: Path, points: int = 10) -> Path:
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    assert RULE in text and "          points: 10\n        - id: lead_magnet" in text
    text = text.replace(RULE, RULE.replace("/pricing", "'${PRICING_PATH}'")).replace(
        "          points: 10\n        - id: lead_magnet",
        f"          points: {points}\n        - id: lead_magnet",
    )
    path = tmp_path / f"p{points}.yaml"
    path.write_text(text)
    return path


def _scored(url: str, playbook: Path) -> None:
    """An engine with this environment applies the playbook and scores a profile under it."""
    h = make_harness(url, str(playbook))
    try:
        h.send({"type": "page", "userId": "low", "properties": {"path": "/pricing"}})
        h.settle()
    finally:
        h.engine.stop()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(list(args)) == 0
    return capsys.readouterr().out.splitlines()


def test_diff_says_a_changed_value_rescores_and_names_only_the_variable(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    playbook = _playbook(tmp_path)
    monkeypatch.setenv("PRICING_PATH", "/pricing")
    _scored(sqlite_url, playbook)
    diff = ("playbook", "diff", "--database-url", sqlite_url, str(playbook))
    assert _run(capsys, *diff) == ["no changes"]

    monkeypatch.setenv("PRICING_PATH", "/plans-secret")
    lines = _run(capsys, *diff)
    assert lines[0] == "no changes to the text"
    rescores = [line for line in lines if line.startswith("rescores model lead:")]
    assert len(rescores) == 1 and "${PRICING_PATH}" in rescores[0]
    assert not any("/plans-secret" in line or "/pricing" in line for line in lines)
    # Re-applying the same text stores nothing, and says why nothing is rescored yet.
    applied = _run(capsys, "playbook", "apply", "--database-url", sqlite_url, str(playbook))
    assert any(line.startswith("unchanged:") for line in applied)
    assert rescores[0] in applied


def test_diff_says_a_changed_rule_rescores(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PRICING_PATH", "/pricing")
    _scored(sqlite_url, _playbook(tmp_path))
    lines = _run(
        capsys, "playbook", "diff", "--database-url", sqlite_url, str(_playbook(tmp_path, 30))
    )
    assert "~ scoring.models[lead].engagement[pricing_page].points: 10 -> 30" in lines
    assert any(line.startswith("rescores model lead: its rules changed") for line in lines)


def test_backtest_says_when_the_current_rules_here_are_not_the_engines(
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its `current` rows are the live playbook as this shell builds it: with another value of
    a variable the rules read, they are not what the engine scored with."""
    playbook = _playbook(tmp_path)
    monkeypatch.setenv("PRICING_PATH", "/pricing")
    _scored(sqlite_url, playbook)
    backtest = ("backtest", "--playbook", str(playbook), "--database-url", sqlite_url)
    assert not any(line.startswith("note:") for line in _run(capsys, *backtest))
    monkeypatch.setenv("PRICING_PATH", "/plans-secret")
    notes = [line for line in _run(capsys, *backtest) if line.startswith("note:")]
    assert len(notes) == 1 and "model lead" in notes[0] and "${PRICING_PATH}" in notes[0]
    assert "/plans-secret" not in notes[0]
