"""`playbook diff` and `apply` say which scoring models applying would rescore, and which
journeys would get a new version, and why: a changed rule or definition, or a `${VAR}` whose
value in this shell is not the one the engine used (named, its value never printed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.cli import main
from tests.contract.conftest import EXAMPLE_PLAYBOOK, make_harness

RULE = "{ field: page.path, op: starts_with, value: /pricing }"


def _playbook(tmp_path: Path, points: int = 10, reentry: str = "once") -> Path:
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    assert RULE in text and "          points: 10\n        - id: lead_magnet" in text
    assert text.count("duration: 48h") == 1 and text.count("reentry: once") == 1
    text = (
        text.replace(RULE, RULE.replace("/pricing", "'${PRICING_PATH}'"))
        .replace(
            "          points: 10\n        - id: lead_magnet",
            f"          points: {points}\n        - id: lead_magnet",
        )
        .replace("duration: 48h", "duration: '${NURTURE_WAIT}'")
        .replace("reentry: once", f"reentry: {reentry}")
    )
    path = tmp_path / f"p{points}{reentry}.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def scored(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The playbook, which an engine with `PRICING_PATH=/pricing` and `NURTURE_WAIT=48h` applied
    and scored a profile under; the test then changes a variable with `monkeypatch`."""
    playbook = _playbook(tmp_path)
    monkeypatch.setenv("PRICING_PATH", "/pricing")
    monkeypatch.setenv("NURTURE_WAIT", "48h")
    _page(sqlite_url, playbook, "low", "/pricing")
    yield playbook


def _page(url: str, playbook: Path, user: str, path: str) -> None:
    """An engine started on the database in this environment processes a page view."""
    h = make_harness(url, str(playbook))
    try:
        h.send({"type": "page", "userId": user, "properties": {"path": path}})
        h.settle()
    finally:
        h.engine.stop()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(list(args)) == 0
    return capsys.readouterr().out.splitlines()


Capture = pytest.CaptureFixture[str]


def test_diff_says_a_changed_value_rescores_and_names_only_the_variable(
    scored: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    diff = ("playbook", "diff", "--database-url", sqlite_url, str(scored))
    assert _run(capsys, *diff) == ["no changes"]

    monkeypatch.setenv("PRICING_PATH", "/plans-secret")
    lines = _run(capsys, *diff)
    assert lines[0] == "no changes to the text"
    rescores = [line for line in lines if line.startswith("rescores model lead:")]
    assert len(rescores) == 1 and "${PRICING_PATH}" in rescores[0]
    assert not any("/plans-secret" in line or "/pricing" in line for line in lines)
    # Re-applying the same text stores nothing, and says why nothing is rescored yet.
    applied = _run(capsys, "playbook", "apply", "--database-url", sqlite_url, str(scored))
    assert any(line.startswith("unchanged:") for line in applied)
    assert rescores[0] in applied


def test_diff_says_a_changed_rule_rescores(
    scored: Path, sqlite_url: str, tmp_path: Path, capsys: Capture
) -> None:
    changed = str(_playbook(tmp_path, 30))
    lines = _run(capsys, "playbook", "diff", "--database-url", sqlite_url, changed)
    assert "~ scoring.models[lead].engagement[pricing_page].points: 10 -> 30" in lines
    assert any(line.startswith("rescores model lead: its rules changed") for line in lines)
    assert not any("journey" in line for line in lines)


def test_diff_and_apply_say_a_changed_journey_gets_a_new_version(
    scored: Path, sqlite_url: str, tmp_path: Path, capsys: Capture
) -> None:
    changed = str(_playbook(tmp_path, reentry="always"))
    lines = _run(capsys, "playbook", "diff", "--database-url", sqlite_url, changed)
    assert '~ journeys.flows[lead_nurture].reentry: "once" -> "always"' in lines
    (line,) = [line for line in lines if "journey lead_nurture" in line]
    assert line.startswith("new version of journey lead_nurture: its definition changed")
    assert "stay on the version they entered" in line
    assert not any(line.startswith("rescores model") for line in lines)
    applied = _run(capsys, "playbook", "apply", "--database-url", sqlite_url, changed)
    assert line in applied


def test_diff_says_a_journey_value_changed_and_names_only_the_variable(
    scored: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.setenv("NURTURE_WAIT", "49h")
    lines = _run(capsys, "playbook", "diff", "--database-url", sqlite_url, str(scored))
    assert lines[0] == "no changes to the text"
    (line,) = lines[1:]
    assert line.startswith("new version of journey lead_nurture: ") and "${NURTURE_WAIT}" in line
    assert not any("48h" in line or "49h" in line for line in lines)
    applied = _run(capsys, "playbook", "apply", "--database-url", sqlite_url, str(scored))
    assert line in applied


def test_backtest_says_when_the_current_rules_here_are_not_the_engines(
    scored: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    """Its `current` rows are the live playbook as this shell builds it: with another value of
    a variable the rules read, they are not what the engine scored with."""
    backtest = ("backtest", "--playbook", str(scored), "--database-url", sqlite_url)
    assert not any(line.startswith("note:") for line in _run(capsys, *backtest))
    monkeypatch.setenv("PRICING_PATH", "/plans-secret")
    notes = [line for line in _run(capsys, *backtest) if line.startswith("note:")]
    assert len(notes) == 1 and "model lead" in notes[0] and "${PRICING_PATH}" in notes[0]
    assert "/plans-secret" not in notes[0]


def test_explain_says_when_a_score_was_made_with_other_values_than_this_shells(
    scored: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    explain = ("explain", "low", "--database-url", sqlite_url)
    (headline,) = [line for line in _run(capsys, *explain) if line.startswith("lead: ")]
    assert "PRICING_PATH" not in headline
    monkeypatch.setenv("PRICING_PATH", "/plans-secret")
    (headline,) = [line for line in _run(capsys, *explain) if line.startswith("lead: ")]
    assert headline.startswith("lead: 10 = fit 0 + engagement 10 ")
    assert "${PRICING_PATH}" in headline and "/plans-secret" not in headline


def test_diff_says_a_renamed_journey_is_new_and_the_old_ones_instances_end(
    scored: Path, sqlite_url: str, tmp_path: Path, capsys: Capture
) -> None:
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(scored.read_text().replace("- id: lead_nurture", "- id: lead_welcome"))
    lines = _run(capsys, "playbook", "diff", "--database-url", sqlite_url, str(renamed))
    assert "new version of journey lead_welcome: it is new" in "\n".join(lines)
    (removed,) = [line for line in lines if line.startswith("removes journey ")]
    assert removed.startswith("removes journey lead_nurture: its running instances end")
    assert "journey removed from the playbook" in removed


def test_diff_says_which_steps_migrate_moves_to_the_new_version(
    scored: Path, sqlite_url: str, tmp_path: Path, capsys: Capture
) -> None:
    mapped = tmp_path / "mapped.yaml"
    migrate = "reentry: once\n      migrate: { wait_48h: send_case_study }"
    mapped.write_text(scored.read_text().replace("reentry: once", migrate))
    lines = _run(capsys, "playbook", "diff", "--database-url", sqlite_url, str(mapped))
    (line,) = [line for line in lines if "journey lead_nurture" in line]
    assert line.startswith("new version of journey lead_nurture: its definition changed")
    assert line.endswith(
        "except those `migrate` maps, which move to this version's step "
        "(wait_48h → send_case_study)"
    )


def _ran_with(sqlite_url: str, playbook: Path, **env: str) -> None:
    """An engine started on the database with `env` set, which processes one event."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        _page(sqlite_url, playbook, "other", "/")


def _said_back(capsys: Capture, url: str, playbook: Path, what: str, *values: str) -> None:
    """`playbook diff` and `apply` say, beyond an unchanged text, `what: back to an earlier
    version`, naming the variable (`values[0]`) and none of its values (the rest)."""
    lines = _run(capsys, "playbook", "diff", "--database-url", url, str(playbook))
    assert lines[0] == "no changes to the text"
    (line,) = lines[1:]
    assert line.startswith(f"{what}: back to an earlier version")
    assert values[0] in line and not any(value in line for value in values[1:])
    applied = _run(capsys, "playbook", "apply", "--database-url", url, str(playbook))
    assert line in applied


def test_diff_says_a_value_back_to_one_the_engine_ran_before_brings_back_a_journey_version(
    scored: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    """48h, then 49h, then 48h again in this shell: the engine runs the 49h version, and the
    48h one it registered before becomes live again when an engine starts with 48h."""
    journey = "new version of journey lead_nurture"
    _ran_with(sqlite_url, scored, NURTURE_WAIT="49h")
    _said_back(capsys, sqlite_url, scored, journey, "${NURTURE_WAIT}", "48h", "49h")
    # With this shell's 49h, the version the engine runs: nothing to say.
    diff = ("playbook", "diff", "--database-url", sqlite_url, str(scored))
    monkeypatch.setenv("NURTURE_WAIT", "49h")
    assert _run(capsys, *diff) == ["no changes"]
    # The engine back on 48h runs the first version again, registered before 49h's.
    _ran_with(sqlite_url, scored, NURTURE_WAIT="48h")
    _said_back(capsys, sqlite_url, scored, journey, "${NURTURE_WAIT}", "48h", "49h")
    monkeypatch.setenv("NURTURE_WAIT", "48h")
    assert _run(capsys, *diff) == ["no changes"]


def test_diff_says_a_value_back_to_one_the_engine_scored_with_before_rescores(
    scored: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    _ran_with(sqlite_url, scored, PRICING_PATH="/plans")
    model = "rescores model lead"
    _said_back(capsys, sqlite_url, scored, model, "${PRICING_PATH}", "/plans", "/pricing")
    monkeypatch.setenv("PRICING_PATH", "/plans")
    diff = ("playbook", "diff", "--database-url", sqlite_url, str(scored))
    assert _run(capsys, *diff) == ["no changes"]
