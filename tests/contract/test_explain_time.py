"""`leadloop explain` says the time it reads scores as of: `--at`, or the engine's newest event
when that is later than this machine's clock (a manual-clock sandbox run ahead), else the wall
clock. Engagement that fades with a half-life is read as of that time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadloop.app import Engine
from leadloop.cli import main
from leadloop.clock import ManualClock
from leadloop.config import Settings
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness

AHEAD = 3_000_000_000.0
"""January 2065: a sandbox clock ahead of any wall clock these tests run under."""
WEEK = 7 * 86400.0


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _shown(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.fixture
def fading(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    """The example playbook with the pricing page's 10 points halving every week, on an
    engine whose manual clock stands at `AHEAD`."""
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    old = "          points: 10\n        - id: lead_magnet"
    assert old in text
    playbook = tmp_path / "p.yaml"
    playbook.write_text(text.replace(old, "          half_life: 7d\n" + old))
    engine = Engine(
        Settings(database_url=backend_url, playbook=str(playbook)),
        clock=ManualClock(AHEAD),
        manual_clock=True,
    )
    engine.start()
    h = Harness(engine)
    try:
        h.send({"type": "page", "userId": "hl", "properties": {"path": "/pricing"}})
        h.settle()
        yield h
    finally:
        engine.stop()


def _explain(capsys: pytest.CaptureFixture[str], h: Harness, *args: str) -> list[str]:
    assert main(["explain", "hl", "--database-url", h.engine.url.url, *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_explain_reads_a_sandbox_as_of_its_newest_event(
    fading: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _explain(capsys, fading)
    assert lines[0] == f"as of {_shown(AHEAD)} (the engine's newest event, after this clock)"
    assert lines[1].startswith("lead: 10 = fit 0 + engagement 10 ")


def test_explain_at_a_time_reads_fading_points_as_of_it(
    fading: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _explain(capsys, fading, "--at", _iso(AHEAD + WEEK))
    assert lines[0] == f"as of {_shown(AHEAD + WEEK)} (--at)"
    assert lines[1].startswith("lead: 5 = fit 0 + engagement 5 ")
    # Epoch seconds and a date are read as `metrics` reads them.
    assert _explain(capsys, fading, "--at", str(int(AHEAD + 2 * WEEK)))[1].startswith(
        "lead: 2.5 = fit 0 + engagement 2.5 "
    )


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("tomorrow", "expected a date (2026-11-01), a date and time with a zone"),
        ("2065-01-01T09:00:00", "a date and time needs a zone"),
        ("-5", "must be between 1970"),
        ("", "expected a date"),
    ],
)
def test_explain_refuses_an_at_that_names_no_instant(
    fading: Harness, capsys: pytest.CaptureFixture[str], bad: str, words: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain", "hl", "--database-url", fading.engine.url.url, f"--at={bad}"])
    assert exited.value.code == 2
    assert f"argument --at: {words}" in capsys.readouterr().err
