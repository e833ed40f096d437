"""`leadloop events parked|redrive` against a running engine, in-process (`main(argv)`): the
command asks in the database, the engine's processor re-drives, the command reports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadloop.cli import main
from leadloop.log import breaker, park
from tests.contract.conftest import Harness
from tests.contract.test_parked_events import Probe, effects, halted, outbox_order, track
from tests.contract.test_parked_events import holding as holding  # a fixture: used by its name
from tests.contract.test_parked_events import probed as probed  # a fixture: used by its name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as stop:  # argparse's usage errors
        status = int(stop.code or 0)
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.fixture
def stuck(probed: tuple[Harness, Probe], backend_url: str) -> Iterator[tuple[Harness, Probe, str]]:
    h, probe = probed
    probe.poison = {"m2", "m3"}
    h.send(track(1), track(2), track(3), track(4))
    h.settle()
    yield h, probe, backend_url


def test_parked_lists_them_and_redrive_processes_the_fixed_one(
    stuck: tuple[Harness, Probe, str], capsys: pytest.CaptureFixture[str]
) -> None:
    h, probe, url = stuck
    code, out, _ = run(capsys, "events", "parked", "--database-url", url)
    assert code == 0
    first, second = out.splitlines()
    assert first.startswith("#1  seq ") and " default  m2  Clicked  attempts=3 " in first
    assert first.endswith("ValueError: no rule for this event") and " m3 " in second
    code, out, _ = run(capsys, "events", "parked", "--json", "--database-url", url)
    rows = json.loads(out)
    assert [r["message_id"] for r in rows] == ["m2", "m3"] and "Traceback" in rows[0]["traceback"]
    assert run(capsys, "events", "parked", "--workspace", "default", "--database-url", url)[0] == 0

    probe.poison = {"m3"}  # m2's rule is fixed, m3's not yet
    code, out, _ = run(capsys, "events", "redrive", "1", "--database-url", url)
    assert (code, out) == (0, "#1: processed\n")
    code, out, _ = run(capsys, "events", "redrive", "--all", "--database-url", url)
    assert code == 1 and out.startswith("#2: still failing, stays parked: #2 ")
    assert "attempts=4" in out
    assert [r.message_id for r in h.engine.read_sync(park.list_parked)] == ["m3"]
    assert [m for m, _, _ in effects(h)] == ["m1", "m2", "m4"]

    code, out, _ = run(capsys, "events", "redrive", "2", "--wait", "0", "--database-url", url)
    assert (code, out) == (0, "asked the engine to re-drive 1 parked event(s)\n")


def test_redrive_of_an_event_erased_meanwhile_says_it_is_gone(
    stuck: tuple[Harness, Probe, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The log no longer holds the event: the re-drive removes its row and has nothing to
    process, which was reported as `processed`."""
    h, _probe, url = stuck
    h.engine.writer.submit(
        lambda c: c.execute("DELETE FROM events WHERE message_id = 'm2'")
    ).result()
    code, out, _ = run(capsys, "events", "redrive", "1", "--database-url", url)
    assert (code, out) == (0, "#1: gone: the event was erased; its parked row is removed\n")
    assert [r.message_id for r in h.engine.read_sync(park.list_parked)] == ["m3"]
    assert [m for m, _, _ in effects(h)] == ["m1", "m4"]


def test_redrive_refuses_an_unknown_id_and_asks_for_nothing(
    stuck: tuple[Harness, Probe, str], capsys: pytest.CaptureFixture[str]
) -> None:
    h, _probe, url = stuck
    code, _, err = run(capsys, "events", "redrive", "99", "--database-url", url)
    assert code == 2 and err == (
        "leadloop: error: no parked event 99 (`leadloop events parked` lists them; a re-driven "
        "event that was processed is no longer parked)\n"
    )
    assert all(r.redrive_requested_at is None for r in h.engine.read_sync(park.list_parked))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["events", "redrive"], "one of the arguments id --all is required"),
        (["events", "redrive", "1", "--all"], "not allowed with argument"),
        (["events", "redrive", "one"], "argument id: expected a row id"),
        (["events", "redrive", "0"], "argument id: expected a row id from 1"),
        (["events", "redrive", "--all", "--wait", "-1"], "--wait"),
        (["events", "redrive", "--all", "--wait", "3601"], "--wait"),
        (["events", "parked", "--workspace", ""], "--workspace"),
        (["events", "park-current", "--wait", "x"], "--wait"),
        (["events", "park-current", "3"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_one_line_naming_them(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    code, out, err = run(capsys, *argv, "--database-url", sqlite_url)
    assert code == 2 and out == "" and words in err.splitlines()[-1]


@pytest.mark.parametrize("argv", [["events", "parked"], ["events", "redrive", "--all"]])
def test_a_missing_database_is_an_error_and_is_not_created(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "elsewhere" / "leadloop.db"
    code, _, err = run(capsys, *argv, "--database-url", f"sqlite:///{missing}")
    assert code == 2 and f"no database at {missing}" in err
    assert not missing.parent.exists()


def test_an_unknown_workspace_is_an_error(
    stuck: tuple[Harness, Probe, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _h, _probe, url = stuck
    code, _, err = run(capsys, "events", "parked", "--workspace", "nope", "--database-url", url)
    assert code == 2 and "workspace 'nope' does not exist" in err


def test_nothing_parked(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    assert run(capsys, "migrate", "--database-url", sqlite_url)[0] == 0
    assert run(capsys, "events", "parked", "--database-url", sqlite_url)[1:] == (
        "",
        "no parked events\n",
    )
    assert run(capsys, "events", "parked", "--json", "--database-url", sqlite_url)[1] == "[]\n"
    code, out, err = run(capsys, "events", "redrive", "--all", "--database-url", sqlite_url)
    assert (code, out, err.splitlines()[-1]) == (0, "", "no parked events")


def test_parked_says_the_processor_holds_and_park_current_parks_the_held_event(
    holding: tuple[Harness, Probe], backend_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    h, probe = holding
    limit = breaker.Limits().in_a_row
    culprit = f"m{limit + 1}"
    code, out, _ = run(capsys, "events", "parked", "--database-url", backend_url)
    first, *rest = out.splitlines()
    assert code == 0 and len(rest) == limit
    assert first.startswith("the processor holds at log seq ") and f"(default {culprit})" in first
    assert f"events of {limit} senders parked in a row" in first and "park-current" in first
    code, out, err = run(capsys, "events", "parked", "--json", "--database-url", backend_url)
    assert len(json.loads(out)) == limit and "the processor holds at log seq " in err

    probe.broken, probe.poison = False, {culprit}
    code, out, _ = run(capsys, "events", "park-current", "--database-url", backend_url)
    assert code == 0 and out.startswith(f"parked {culprit} (log seq ") and f"#{limit + 1}" in out
    h.settle()
    assert halted(h) is None and outbox_order(h) == [f"m{n}" for n in range(limit + 2, 21)]
    code, _, err = run(capsys, "events", "park-current", "--database-url", backend_url)
    assert code == 2 and "the processor holds no event" in err
