"""A segment journey applied to a running workspace, or whose segment a new version changes,
reaches the profiles already in it (or that time alone will bring in) without waiting for their
next event: the engine evaluates that segment once for every profile, through the processor,
and sets each profile's segment timer (due now for those in the segment now). On both
backends, with the real processor on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.journeys import segments, sweep
from leadloop.log.rebuild import reset_derived_state
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import DAY, HOUR, instances, person, timers, track
from tests.contract.test_journeys_seed import journey_harness, playbook_with_journeys
from tests.contract.test_journeys_segment_time import (
    FADED,
    FADED_AFTER,
    SILENCE,
    fading_playbook,
    segment_flow,
)

pytestmark = pytest.mark.usefixtures("channels_env")

DONE = ("completed", None, "reached the end")
BEFORE = segment_flow("plain", "{ event: Visited, op: gte, value: 5 }")
"""The playbook running before the win-back is applied: a segment nobody here enters."""
WINBACK = segment_flow("winback", *SILENCE)
SHORTER = segment_flow(
    "winback", "{ event: Visited }", "{ event: Visited, within: 10d, not: true }"
)


@contextmanager
def running(backend_url: str, playbook: str, at: float | None = None) -> Iterator[Harness]:
    """An engine on `playbook`; `at`: started again on that database, its clock at `at`."""
    if at is None:
        h = journey_harness(backend_url, playbook)
    else:
        settings = Settings(database_url=backend_url, playbook=playbook)
        h = Harness(Engine(settings, clock=ManualClock(at), manual_clock=True))
        h.engine.start()
        h.engine.dispatcher.senders.pop("message", None)
    h.engine.dispatcher.senders.pop("webhook", None)
    try:
        yield h
    finally:
        h.engine.stop()


def apply(h: Harness, tmp_path: Path, fragment: str, name: str) -> None:
    """Apply a playbook with `fragment` as its journeys to the running engine, and let the
    sweep and the timers it sets due now run."""
    h.engine.apply_playbook_file(playbook_with_journeys(tmp_path, fragment, name))
    h.engine.refresh_playbooks()
    h.advance(0)


def entered(h: Harness, pid: str) -> list[float]:
    rows = h.sql(
        "SELECT entered_at FROM journey_instances WHERE profile_id = ? AND journey_id = ? "
        "ORDER BY entered_at",
        pid,
        "winback",
    )
    return [float(r[0]) for r in rows]


def last_visit(h: Harness, pid: str) -> float:
    [(at,)] = h.sql(
        "SELECT MAX(received_at) FROM events WHERE profile_id = ? AND event = 'Visited'", pid
    )
    return float(at)


def three_people(h: Harness) -> tuple[str, str, str]:
    """Silent for 40 days, silent for 20, and active today (one visit each)."""
    silent, twenty, active = person(h, "s"), person(h, "t"), person(h, "a")
    track(h, "s", "Visited")
    h.advance(20 * DAY)
    track(h, "t", "Visited")
    h.advance(20 * DAY)
    track(h, "a", "Visited")
    return silent, twenty, active


def winback_applied(
    h: Harness, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> tuple[str, str, str]:
    """`three_people`, then the win-back journey applied: swept once."""
    people = three_people(h)
    apply(h, tmp_path, WINBACK, "winback.yaml")
    assert sweeps == [("plain",), ("winback",)]
    return people


@pytest.fixture
def sweeps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The journeys of each sweep the engine runs, in order (the first, `plain` at the
    start, evaluates no profile: there is none yet)."""
    seen: list[tuple[str, ...]] = []
    real = sweep.sweep_workspace

    def spy(*args: Any, **kwargs: Any) -> int:
        seen.append(tuple(j.id for j in args[3]))
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "sweep_workspace", spy)
    return seen


def test_a_win_back_journey_applied_reaches_the_people_already_silent(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> None:
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        silent, twenty, active = winback_applied(h, tmp_path, sweeps)
        now = h.engine.clock.now()  # applied now: `apply` does not move the clock
        # Silent for 40 days: in the segment now, entered now, once.
        assert instances(h, silent, "winback") == [DONE]
        assert entered(h, silent) == [now]
        assert timers(h, silent, "segment") == []
        # The others are not in it yet; time alone will bring them in, so a timer waits.
        assert instances(h, twenty, "winback") == []
        assert instances(h, active, "winback") == []
        [due] = timers(h, twenty, "segment")
        assert last_visit(h, twenty) + 30 * DAY < due < last_visit(h, twenty) + 30 * DAY + 1e-3
        [due] = timers(h, active, "segment")
        assert last_visit(h, active) + 30 * DAY < due < last_visit(h, active) + 30 * DAY + 1e-3
        # Day 30 of the 20-day silence: it enters then, not at an event it never sends.
        h.advance(10 * DAY - HOUR)
        assert instances(h, twenty, "winback") == []
        h.advance(2 * HOUR)
        assert instances(h, twenty, "winback") == [DONE]
        [at] = entered(h, twenty)
        assert last_visit(h, twenty) + 30 * DAY < at < last_visit(h, twenty) + 30 * DAY + 1e-3
        assert instances(h, silent, "winback") == [DONE]
        assert instances(h, active, "winback") == []


def test_a_segment_on_a_fading_score_applied_reaches_those_under_it_and_times_the_others(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> None:
    with running(backend_url, fading_playbook(tmp_path, BEFORE)) as h:
        faded, fresh = person(h, "f"), person(h, "g")
        track(h, "f", "Lead Magnet Downloaded")
        h.advance(20 * DAY)  # 15 points two half-lives ago: 3.75, under 5
        track(h, "g", "Lead Magnet Downloaded")
        download = h.engine.clock.now()
        h.engine.apply_playbook_file(fading_playbook(tmp_path, FADED, "faded.yaml"))
        h.engine.refresh_playbooks()
        h.advance(0)
        assert sweeps == [("plain",), ("faded",)]
        assert instances(h, faded, "faded") == [DONE]
        assert instances(h, fresh, "faded") == []
        [due] = timers(h, fresh, "segment")
        assert download + FADED_AFTER < due < download + FADED_AFTER + 1
        h.advance(FADED_AFTER + HOUR)
        assert instances(h, fresh, "faded") == [DONE]


def test_applying_the_same_segment_again_sweeps_nothing(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> None:
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        silent, _twenty, _active = winback_applied(h, tmp_path, sweeps)
        due_events = h.sql("SELECT COUNT(*) FROM events WHERE event = 'Journey Segment Due'")
        # The same playbook again, then one whose other journeys changed but whose win-back
        # segment did not: nothing to sweep, and nobody enters twice.
        apply(h, tmp_path, WINBACK, "winback.yaml")
        another = WINBACK.replace("[winback]", "[winback, other]") + (
            "    - id: other\n      entry: { event: Hello }\n      steps:\n"
            "        - { id: other, type: send, channel: email, template: other }\n"
        )
        apply(h, tmp_path, another, "another.yaml")
        assert sweeps == [("plain",), ("winback",)]
        assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Journey Segment Due'") == (
            due_events
        )
        assert instances(h, silent, "winback") == [DONE]
    # Started again on that playbook: nothing is stale either.
    with running(backend_url, playbook_with_journeys(tmp_path, another, "another.yaml")) as h:
        h.advance(0)
        assert sweeps == [("plain",), ("winback",)]
        assert instances(h, silent, "winback") == [DONE]


def test_a_changed_window_sweeps_again(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> None:
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        silent, twenty, active = winback_applied(h, tmp_path, sweeps)
        assert instances(h, twenty, "winback") == []
        now = h.engine.clock.now()
        # Ten days instead of thirty: the 20-day silence is in the segment now, and the
        # timer of the active one moves earlier, not left where the old window put it.
        apply(h, tmp_path, SHORTER, "shorter.yaml")
        assert sweeps == [("plain",), ("winback",), ("winback",)]
        assert instances(h, twenty, "winback") == [DONE]
        assert entered(h, twenty) == [now]
        [due] = timers(h, active, "segment")
        assert last_visit(h, active) + 10 * DAY < due < last_visit(h, active) + 10 * DAY + 1e-3
        # Already in under the old window and still in: it stayed in, no second entry.
        assert instances(h, silent, "winback") == [DONE]
        h.advance(11 * DAY)
        assert instances(h, active, "winback") == [DONE]
        assert instances(h, silent, "winback") == [DONE]


def test_a_sweep_cut_short_is_run_again_at_start_without_entering_anyone_twice(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "CHUNK", 1)
    real = sweep.sweep_chunk
    calls: list[int] = []

    def crash_once(*args: Any, **kwargs: Any) -> Any:
        # Every chunk after the first: the engine's watcher may have asked for the sweep too.
        calls.append(1)
        if len(calls) >= 2:
            raise RuntimeError("the engine stopped mid-sweep")
        return real(*args, **kwargs)

    winback = playbook_with_journeys(tmp_path, WINBACK, "winback.yaml")
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        users = ["s", "s2", "s3"]
        pids = [person(h, u) for u in users]
        for user in users:
            track(h, user, "Visited")
        h.advance(40 * DAY)
        monkeypatch.setattr(sweep, "sweep_chunk", crash_once)
        h.engine.apply_playbook_file(winback)
        h.engine.refresh_playbooks()
        h.advance(0)
        # Whoever the first chunk reached has entered; the rest wait for the sweep to finish.
        assert sorted(len(instances(h, pid, "winback")) for pid in pids) == [0, 0, 1]
        stopped = h.engine.clock.now()
    monkeypatch.setattr(sweep, "sweep_chunk", real)
    before = len(sweeps)
    with running(backend_url, winback, stopped + HOUR) as h:
        h.advance(0)
        assert sweeps[before:] == [("winback",)]
        assert [instances(h, pid, "winback") for pid in pids] == [[DONE]] * 3
        assert sorted(len(entered(h, pid)) for pid in pids) == [1, 1, 1]


def test_a_replay_of_the_log_gives_the_entries_the_sweep_made(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> None:
    """The sweep only sets timers; their firings are events of the log, so replaying the log
    decides the same entries and leaves the same timers."""
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        silent, twenty, _active = winback_applied(h, tmp_path, sweeps)

        def snapshot() -> tuple[object, ...]:
            return (
                h.sql("SELECT id, status, entered_at FROM journey_instances ORDER BY id"),
                h.sql("SELECT key, due_at FROM timers WHERE key LIKE ? ORDER BY key", "segment:%"),
                h.sql("SELECT idempotency_key FROM outbox ORDER BY idempotency_key"),
            )

        before = snapshot()
        assert instances(h, silent, "winback") == [DONE] and timers(h, twenty, "segment") != []
        h.engine.writer.submit(reset_derived_state).result()
        h.engine.processor.wake()
        # Replayed, the silent profile's visit sets its timer for day 30 (the journey is live
        # for the whole log now); already past, it fires, and finds the profile entered.
        h.advance(0)
        assert snapshot() == before


PRO_WINBACK = segment_flow("winback", "{ trait: plan, op: equals, value: pro }", *SILENCE)


def test_a_sweep_reads_events_only_for_profiles_the_traits_let_through_and_shows_progress(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "CHUNK", 2)
    read_for: list[str] = []
    rows_read: list[object] = []
    real_load = sweep.ChunkFacts._load_events

    def load(facts: sweep.ChunkFacts, name: str, ids: list[str]) -> Any:
        read_for.extend(ids)
        found = real_load(facts, name, ids)
        rows_read.extend(found.values())
        return found

    monkeypatch.setattr(sweep.ChunkFacts, "_load_events", load)
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        shown: list[object] = []
        real_chunk = sweep.sweep_chunk

        def chunk(*args: Any) -> Any:
            shown.append(h.engine.playbook_status("default")["segment_sweep"])
            return real_chunk(*args)

        monkeypatch.setattr(sweep, "sweep_chunk", chunk)
        free = [person(h, f"f{i}", plan="free") for i in range(3)]
        pro = person(h, "p", plan="pro")
        for user in ("f0", "f1", "f2", "p"):
            track(h, user, "Visited")
        h.advance(40 * DAY)
        read_for.clear()
        apply(h, tmp_path, PRO_WINBACK, "pro.yaml")
        assert read_for == [pro]
        # `{event: Visited}` is a count: the visit 40 days ago, out of the 30-day window, is
        # not read as a row.
        assert rows_read == [[]]
        assert instances(h, pro, "winback") == [DONE]
        assert [instances(h, pid, "winback") for pid in free] == [[]] * 3
        assert [timers(h, pid, "segment") for pid in free] == [[]] * 3
        # `GET /api/v1/status` shows the sweep while it runs, and nothing once it is done.
        assert shown == [
            {"profiles_done": 0, "profiles": 4},
            {"profiles_done": 2, "profiles": 4},
        ]
        assert h.engine.playbook_status("default")["segment_sweep"] is None


def test_a_journey_removed_and_added_back_is_swept_again(
    backend_url: str, tmp_path: Path, sweeps: list[tuple[str, ...]]
) -> None:
    """While the win-back is out of the playbook no timer watches its segment: a person who
    fell silent meanwhile is reached when it comes back, though its segment is the same."""
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        winback_applied(h, tmp_path, sweeps)
        apply(h, tmp_path, BEFORE, "before.yaml")
        late = person(h, "late")
        track(h, "late", "Visited")
        h.advance(40 * DAY)
        assert instances(h, late, "winback") == []
        apply(h, tmp_path, WINBACK + "# back\n", "back.yaml")
        assert sweeps == [("plain",), ("winback",), ("plain",), ("winback",)]
        assert instances(h, late, "winback") == [DONE]


def test_a_profile_erased_while_its_chunk_is_evaluated_gets_no_rows_back(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL an erasure is a plain write, which may commit between the sweep's read of
    a chunk and its write: the erased profile must not get a timer or a membership again."""
    from leadloop.identity.erase import erase_profile

    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        gone, kept = person(h, "gone"), person(h, "kept")
        track(h, "gone", "Visited")
        track(h, "kept", "Visited")
        h.advance(40 * DAY)
        real = segments.sweep_segment
        evaluated: list[int] = []

        def erasing(*args: Any) -> Any:
            decided = real(*args)
            evaluated.append(1)
            if len(evaluated) == 2:  # both evaluated, nothing written yet
                h.engine.writer.submit(lambda c: erase_profile(c, "default", gone)).result()
            return decided

        monkeypatch.setattr(segments, "sweep_segment", erasing)
        apply(h, tmp_path, WINBACK, "winback.yaml")
        assert instances(h, kept, "winback") == [DONE]
        assert h.sql("SELECT COUNT(*) FROM timers WHERE profile_id = ?", gone) == [(0,)]
        assert h.sql("SELECT COUNT(*) FROM journey_profiles WHERE profile_id = ?", gone) == [(0,)]
        assert h.sql("SELECT COUNT(*) FROM journey_instances WHERE profile_id = ?", gone) == [(0,)]
