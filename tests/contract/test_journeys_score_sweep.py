"""A `score` entry journey applied to a running workspace, or whose test a new version changes,
or whose model a rescore changes, reaches the silent profiles that `half_life` fading will
carry across its test: the segment sweep sets each one's timer at that instant, without
waiting for an event of theirs. On both backends, with the real processor on a manual
clock (docs/journeys.md, "Applied to people already there")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from leadloop.journeys import sweep
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import DAY, HOUR, instances, person, timers
from tests.contract.test_journeys_score_fading import COOLED, FLOWS, HOT
from tests.contract.test_journeys_segment_sweep import (
    BEFORE,
    chunks_seen,
    kill_after_second,
    progress_shown,
    running,
    take_up,
)
from tests.contract.test_journeys_segment_time import (
    FADED_AFTER,
    _download,
    _entered,
    _replay,
    _snapshot,
    fading_playbook,
)

pytestmark = pytest.mark.usefixtures("channels_env")

DONE = ("completed", None, "reached the end")
COOLED_ONLY = FLOWS + COOLED + "\n"
LOWER = COOLED_ONLY.replace("op: lt, value: 5", "op: lt, value: 3")
BOTH = FLOWS + COOLED + HOT


def _apply(h: Harness, playbook: str) -> None:
    h.engine.apply_playbook_file(playbook)
    h.engine.refresh_playbooks()
    h.advance(0)


def _sweep_marker(h: Harness, journey: str) -> str:
    [(marker,)] = h.sql(
        "SELECT position FROM cursors WHERE name = ?", f"segment-sweep:default:{journey}"
    )
    return str(marker)


def test_a_score_journey_added_reaches_a_silent_profile_when_its_score_fades_across(
    backend_url: str, tmp_path: Path
) -> None:
    """`cooled` (`lt 5`) applied to a running playbook: the profile at 15 gets its timer at
    the instant its score fades under 5 and enters then, silent; the one already under 5
    when it is applied has crossed nothing, and does not enter, not even at its next event."""
    with running(backend_url, fading_playbook(tmp_path, BEFORE)) as h:
        under, _ = _download(h, "u")
        h.advance(20 * DAY)  # 15 two half-lives ago: 3.75
        fresh, download = _download(h, "f")
        _apply(h, fading_playbook(tmp_path, COOLED_ONLY, "cooled.yaml"))
        assert len(_sweep_marker(h, "cooled")) == 64  # swept: the digest alone
        assert timers(h, under, "segment") == []
        [due] = timers(h, fresh, "segment")
        assert download + FADED_AFTER < due < download + FADED_AFTER + 1
        h.advance(FADED_AFTER - HOUR)
        assert instances(h, fresh, "cooled") == []
        h.advance(2 * HOUR)
        assert instances(h, fresh, "cooled") == [DONE]
        assert _entered(h, fresh) == [due]
        assert timers(h, fresh, "segment") == []
        person(h, "u")
        person(h, "f")
        assert instances(h, under, "cooled") == []
        assert instances(h, fresh, "cooled") == [DONE]


def test_an_event_before_the_instant_leaves_the_timer_and_one_after_it_enters_once(
    backend_url: str, tmp_path: Path
) -> None:
    """The sweep counts as an evaluation where it sets a timer (the test failed then): an
    event after the fade but before the timer fires enters, and the timer then finds the
    crossing taken, as for a profile evaluated at an event (test_journeys_score_fading)."""
    with running(backend_url, fading_playbook(tmp_path, BEFORE)) as h:
        pid, _download_at = _download(h, "e")
        _apply(h, fading_playbook(tmp_path, COOLED_ONLY, "cooled.yaml"))
        [due] = timers(h, pid, "segment")
        h.advance(DAY)
        person(h, "e")  # still over 5: no entry, the timer stays
        assert instances(h, pid, "cooled") == []
        assert timers(h, pid, "segment") == [due]
        h.engine.timers.stop()
        assert h.engine.manual_clock is not None
        h.engine.manual_clock.advance(FADED_AFTER)
        person(h, "e")
        assert instances(h, pid, "cooled") == [DONE]
        assert h.engine.timers.fire_now() == 1
        h.settle()
        assert instances(h, pid, "cooled") == [DONE]


def test_a_changed_test_sweeps_again_and_an_unchanged_one_does_not(
    backend_url: str, tmp_path: Path
) -> None:
    """`lt 5` lowered to `lt 3`: the timer moves to the instant the score fades under 3.
    Changing only the steps (adding another journey) sweeps nothing again."""
    with running(backend_url, fading_playbook(tmp_path, BEFORE)) as h:
        pid, download = _download(h, "c")
        _apply(h, fading_playbook(tmp_path, COOLED_ONLY, "cooled.yaml"))
        first = _sweep_marker(h, "cooled")
        [due] = timers(h, pid, "segment")
        _apply(h, fading_playbook(tmp_path, BOTH, "both.yaml"))
        assert _sweep_marker(h, "cooled") == first
        assert timers(h, pid, "segment") == [due]
        _apply(h, fading_playbook(tmp_path, LOWER, "lower.yaml"))
        assert _sweep_marker(h, "cooled") != first
        # The earlier timer stays (moved lazily): it fires, finds 5 > score >= 3, sets the next.
        h.advance(FADED_AFTER + HOUR)
        assert instances(h, pid, "cooled") == []
        under_three = download + 10 * DAY * math.log2(5)
        [later] = timers(h, pid, "segment")
        assert under_three < later < under_three + 1
        h.advance(under_three - h.engine.clock.now() + HOUR)
        assert _entered(h, pid) == [later]


def test_a_rescore_that_makes_a_score_fade_across_again_reaches_the_silent_profile(
    backend_url: str, tmp_path: Path
) -> None:
    """Entered at 5 and silent since; the download's points are doubled: the rescored 7.5
    is out of `lt 5` again, and the profile enters again when it fades under 5, with no
    event of its own (the rescore sweeps the journeys on the changed model)."""
    cooled = fading_playbook(tmp_path, COOLED_ONLY)
    with running(backend_url, cooled) as h:
        pid, download = _download(h, "r")
        h.advance(20 * DAY)
        assert instances(h, pid, "cooled") == [DONE]
        text = Path(cooled).read_text("utf-8")
        fifteen = "          event: Lead Magnet Downloaded\n          points: 15\n"
        assert text.count(fifteen) == 1
        doubled = tmp_path / "doubled.yaml"
        doubled.write_text(text.replace(fifteen, fifteen.replace("15", "30")), "utf-8")
        _apply(h, str(doubled))
        h.settle()
        again = download + 10 * DAY * math.log2(6)
        [due] = timers(h, pid, "segment")
        assert again < due < again + 1
        h.advance(again - h.engine.clock.now() + HOUR)
        assert instances(h, pid, "cooled") == [DONE, DONE]
        assert _entered(h, pid)[-1] == due


def test_a_replay_of_the_log_gives_the_entries_the_sweep_made(
    backend_url: str, tmp_path: Path
) -> None:
    """The sweep records what an evaluation at the profile's last event records (the test
    failed: the score only faded since) and sets the timer it would; the timer's firing is an
    event of the log, so a replay, where the journey is live from the first event, enters the
    profile the same. (A profile already past the line when the journey was added is not
    replayed the same: the replay sees it fade across; docs/journeys.md, Replays.)"""
    with running(backend_url, fading_playbook(tmp_path, BEFORE)) as h:
        pid, _download_at = _download(h, "f")
        h.advance(DAY)
        _apply(h, fading_playbook(tmp_path, COOLED_ONLY, "cooled.yaml"))
        h.advance(FADED_AFTER + HOUR)
        before = _snapshot(h)
        assert instances(h, pid, "cooled") == [DONE]
        _replay(h)
        assert _snapshot(h) == before


def test_a_score_sweep_killed_between_chunks_resumes_and_shows_its_progress(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started again, the sweep goes on from the profile after the last one done, and
    `GET /api/v1/status` (`playbook.segment_sweep`) shows it; every profile enters once."""
    monkeypatch.setattr(sweep, "CHUNK", 1)
    cooled = fading_playbook(tmp_path, COOLED_ONLY, "cooled.yaml")

    with running(backend_url, fading_playbook(tmp_path, BEFORE)) as h:
        pids = sorted(_download(h, f"k{i}")[0] for i in range(4))
        seen = chunks_seen(monkeypatch, kill_after_second)
        take_up(h, cooled)
        h.advance(0)
        assert seen == [(pids[0],), (pids[1],)]
        assert [len(timers(h, pid, "segment")) for pid in pids] == [1, 1, 0, 0]
        stopped = h.engine.clock.now()
    shown, seen = progress_shown(monkeypatch)
    with running(backend_url, cooled, stopped + HOUR) as h:
        h.advance(0)
        assert [c for c in seen if c] == [(pids[2],), (pids[3],)]
        assert shown[0] == {"profiles_done": 2, "profiles": 4}
        assert h.engine.playbook_status("default")["segment_sweep"] is None
        assert [len(timers(h, pid, "segment")) for pid in pids] == [1] * 4
        h.advance(FADED_AFTER)
        assert [instances(h, pid, "cooled") for pid in pids] == [[DONE]] * 4
