"""A segment journey applied to a running workspace, or whose segment a new version changes,
reaches the profiles already in it (or that time alone will bring in) without waiting for their
next event: the engine evaluates that segment once for every profile, through the processor,
and sets each profile's segment timer (due now for those in the segment now). On both
backends, with the real processor on a manual clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.journeys import segments, sweep
from leadloop.log import store
from leadloop.log.processor import CURSOR
from leadloop.log.rebuild import reset_derived_state
from leadloop.testing import eventually
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import (
    DAY,
    HOUR,
    instances,
    people,
    person,
    timers,
    track,
)
from tests.contract.test_journeys_seed import journey_harness, playbook_with_journeys
from tests.contract.test_journeys_segment_time import (
    FADED,
    FADED_AFTER,
    SILENCE,
    fading_playbook,
    segment_flow,
    segment_flows,
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
    """The journeys of each sweep the engine begins or resumes, in order (the first, `plain`
    at the start, evaluates no profile: there is none yet)."""
    seen: list[tuple[str, ...]] = []

    class Spy(sweep.Sweep):
        def __init__(self, conn: Any, workspace: str, journeys: Any, **kwargs: Any) -> None:
            seen.append(tuple(j.id for j in journeys))
            super().__init__(conn, workspace, journeys, **kwargs)

    monkeypatch.setattr(sweep, "Sweep", Spy)
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


def silent_people(h: Harness, n: int) -> dict[str, str]:
    """`n` profiles, each with one visit 40 days ago (in the win-back segment): user by
    profile id, in the order the sweep takes them (profile id)."""
    users = [f"u{i}" for i in range(n)]
    pids = people(h, users)
    for user in users:
        track(h, user, "Visited")
    h.advance(40 * DAY)
    return {pid: user for user, pid in sorted(pids.items(), key=lambda item: item[1])}


def chunks_seen(monkeypatch: pytest.MonkeyPatch, after: Any = None) -> list[tuple[str, ...]]:
    """The profiles of each chunk the sweep evaluates; `after(n, args)` runs once chunk `n`
    (from 1) is written, on the processor's thread."""
    seen: list[tuple[str, ...]] = []
    real = sweep.sweep_chunk

    def spy(*args: Any) -> Any:
        result = real(*args)
        seen.append(tuple(p.id for p in args[4]))
        if after is not None:
            after(len(seen), args)
        return result

    monkeypatch.setattr(sweep, "sweep_chunk", spy)
    return seen


def take_up(h: Harness, playbook: str) -> None:
    """Apply `playbook` and have the engine take it up at once (a chunk's hook does it on the
    processor's thread, between two chunks)."""
    h.engine.apply_playbook_file(playbook)
    h.engine.refresh_playbooks()


def segment_firings(h: Harness, pid: str) -> int:
    [(n,)] = h.sql(
        "SELECT COUNT(*) FROM events WHERE event = 'Journey Segment Due' AND profile_id = ?", pid
    )
    return int(n)


def test_events_are_processed_between_two_chunks_and_nobody_enters_twice(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep does a chunk per processor job: events accepted during a chunk are processed
    before the next one. A profile already swept (its timer due now) and one not reached yet
    both send an event then: each enters once, whichever of its event and the sweep's timer
    comes first, and the one its event entered gets no timer due now from the sweep."""
    monkeypatch.setattr(sweep, "CHUNK", 1)
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        user_of = silent_people(h, 4)
        pids = list(user_of)
        swept, later = pids[0], pids[-1]
        entered_before_chunk: list[int] = []

        def between(n: int, args: Any) -> None:
            conn = args[0]
            if n == 1:  # the first profile swept, the last not reached yet
                sent = {f"opened-{pid}" for pid in (swept, later)}
                h.send(
                    *(
                        {
                            "type": "track",
                            "userId": user_of[pid],
                            "event": "Opened",
                            "messageId": f"opened-{pid}",
                        }
                        for pid in (swept, later)
                    )
                )
                # On PostgreSQL the log is read up to the oldest transaction still open on
                # the server (any database's): the next batch reads them once it can.
                eventually(
                    lambda: (
                        sent
                        <= {
                            e.message_id
                            for e in store.read_after(conn, store.get_cursor(conn, CURSOR), 1000)[0]
                        }
                    ),
                    timeout=30,
                )
            elif n == 2:
                [(count,)] = conn.execute(
                    "SELECT COUNT(*) FROM journey_instances WHERE profile_id = ?", (later,)
                )
                entered_before_chunk.append(int(count))

        seen = chunks_seen(monkeypatch, between)
        apply(h, tmp_path, WINBACK, "winback.yaml")
        assert [c for c in seen if c] == [(pid,) for pid in pids]
        # The event sent during the first chunk was processed before the second one.
        assert entered_before_chunk == [1]
        assert [instances(h, pid, "winback") for pid in pids] == [[DONE]] * 4
        assert segment_firings(h, later) == 0
        for pid in pids:
            assert len(timers(h, pid, "segment")) <= 1


class Killed(Exception):
    """The engine died between two chunks (SIGKILL): the chunk before is written, no other."""


def killed_after_two_chunks(
    h: Harness, winback: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[tuple[str, ...]]]:
    """Four silent profiles, then `winback` applied with `CHUNK` 1 and the engine killed
    once its second chunk is written: (the profiles in sweep order, the chunks seen)."""
    monkeypatch.setattr(sweep, "CHUNK", 1)
    pids = list(silent_people(h, 4))
    seen = chunks_seen(monkeypatch, kill_after_second)
    take_up(h, winback)
    h.advance(0)
    assert seen == [(pids[0],), (pids[1],)]
    assert [len(instances(h, pid, "winback")) for pid in pids] == [1, 1, 0, 0]
    return pids, seen


def progress_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[object], list[tuple[str, ...]]]:
    """For the next engine started: the sweep progress `GET /api/v1/status` shows after each
    chunk, and the chunks (`chunks_seen`)."""
    shown: list[object] = []
    started: list[Engine] = []
    start = Engine.start
    # Spied before the engine starts: it takes the sweep up at once.
    monkeypatch.setattr(Engine, "start", lambda e: (started.append(e), start(e))[1])

    def status(_n: int, _args: Any) -> None:
        shown.append(started[-1].playbook_status("default")["segment_sweep"])

    return shown, chunks_seen(monkeypatch, status)


def kill_after_second(n: int, _args: Any) -> None:
    """A `chunks_seen` hook: the engine dies once its second chunk is written."""
    if n == 2:
        raise Killed


def test_a_sweep_killed_between_chunks_resumes_where_it_stopped(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk records the sweep's position with its timers: started again, the sweep
    goes on from the next profile (none evaluated twice, none skipped), and the progress
    `GET /api/v1/status` shows counts the profiles done before the stop."""
    winback = playbook_with_journeys(tmp_path, WINBACK, "winback.yaml")
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        pids, _seen = killed_after_two_chunks(h, winback, monkeypatch)
        stopped = h.engine.clock.now()
    shown, seen = progress_shown(monkeypatch)
    with running(backend_url, winback, stopped + HOUR) as h:
        h.advance(0)
        assert [c for c in seen if c] == [(pids[2],), (pids[3],)]
        assert shown[0] == {"profiles_done": 2, "profiles": 4}
        assert [instances(h, pid, "winback") for pid in pids] == [[DONE]] * 4
        assert [segment_firings(h, pid) for pid in pids] == [1] * 4
        assert h.engine.playbook_status("default")["segment_sweep"] is None
        [(marker,)] = h.sql(
            "SELECT position FROM cursors WHERE name = ?", "segment-sweep:default:winback"
        )
        assert len(marker) == 64  # the segment's digest: done


def test_a_segment_changed_mid_sweep_is_swept_again_from_the_first_profile(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new version that changes the segment while it is being swept: the rest is not
    evaluated under the old segment; the new one is evaluated for every profile, once, and
    nobody already in (and still in) enters again."""
    monkeypatch.setattr(sweep, "CHUNK", 1)
    shorter = playbook_with_journeys(tmp_path, SHORTER, "shorter.yaml")
    digests: list[str] = []

    def change_after_second(n: int, args: Any) -> None:
        digests.append(sweep.segment_digest(args[3][0]))
        if n == 2:
            take_up(h, shorter)

    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        pids = list(silent_people(h, 4))
        seen = chunks_seen(monkeypatch, change_after_second)
        apply(h, tmp_path, WINBACK, "winback.yaml")
        old, new = digests[0], digests[-1]
        assert old != new
        evaluated = [(d, c) for d, c in zip(digests, seen, strict=True) if c]
        assert evaluated == [(old, (pids[0],)), (old, (pids[1],))] + [(new, (pid,)) for pid in pids]
        assert [instances(h, pid, "winback") for pid in pids] == [[DONE]] * 4
        assert h.sql(
            "SELECT position FROM cursors WHERE name = ?", "segment-sweep:default:winback"
        ) == [(new,)]


def test_a_journey_added_mid_sweep_is_swept_from_the_first_profile_with_the_other(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journeys swept together may stand at different profiles: the one under way goes on
    from its own, the one added starts from the first; each profile once for each."""
    monkeypatch.setattr(sweep, "CHUNK", 1)
    both = playbook_with_journeys(
        tmp_path, segment_flows(("winback", SILENCE), ("lapsed", SILENCE)), "both.yaml"
    )

    def add_after_second(n: int, _args: Any) -> None:
        if n == 2:
            take_up(h, both)

    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        pids = list(silent_people(h, 4))
        chunks_seen(monkeypatch, add_after_second)
        real = segments.sweep_segment
        decided: list[tuple[str, float]] = []

        def spy(journey: Any, membership: Any, facts: Any, at: float) -> Any:
            decided.append((journey.id, at))
            return real(journey, membership, facts, at)

        monkeypatch.setattr(segments, "sweep_segment", spy)
        apply(h, tmp_path, WINBACK, "winback.yaml")
        assert sorted(j for j, _at in decided) == ["lapsed"] * 4 + ["winback"] * 4
        assert [instances(h, pid, "winback") for pid in pids] == [[DONE]] * 4
        assert [instances(h, pid, "lapsed") for pid in pids] == [[DONE]] * 4


def test_a_journey_removed_mid_sweep_ends_its_sweep_and_loses_its_position(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(`plain`, back in the playbook, is swept again meanwhile.)"""
    monkeypatch.setattr(sweep, "CHUNK", 1)
    before = playbook_with_journeys(tmp_path, BEFORE, "before.yaml")
    winback: list[tuple[str, ...]] = []

    def remove_after_first(n: int, args: Any) -> None:
        if any(j.id == "winback" for j in args[3]):
            winback.append(tuple(p.id for p in args[4]))
        if n == 1:
            take_up(h, before)

    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        pids = list(silent_people(h, 3))
        chunks_seen(monkeypatch, remove_after_first)
        apply(h, tmp_path, WINBACK, "winback.yaml")
        assert winback == [(pids[0],)]
        assert h.sql("SELECT name FROM cursors WHERE name LIKE ?", "segment-sweep:%:winback") == []
        assert h.engine.playbook_status("default")["segment_sweep"] is None


@pytest.mark.parametrize("backend_url", ["postgres"], indirect=True)
def test_a_worker_taking_over_goes_on_with_the_sweep(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two engines on one PostgreSQL database, as two `leadloop worker` processes: the one
    standing by asked for the sweep at its start, runs it once it leads, and goes on from
    where the one that stopped left it."""
    winback = playbook_with_journeys(tmp_path, WINBACK, "winback.yaml")
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as first:
        pids, seen = killed_after_two_chunks(first, winback, monkeypatch)
        with running(backend_url, winback, first.engine.clock.now()) as second:
            assert second.engine.processor.idle_here() is None  # standing by
            first.engine.stop()  # its session ends, and the lead with it
            second.advance(0)
            assert [c for c in seen if c] == [(pid,) for pid in pids]
            assert [instances(second, pid, "winback") for pid in pids] == [[DONE]] * 4
            assert [segment_firings(second, pid) for pid in pids] == [1] * 4


def test_a_sweep_queued_when_a_rescore_is_asked_for_waits_behind_it(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A segment may test a score: a playbook that changes a scoring model while the next
    chunk of a sweep is queued has that chunk run after the rescore, not before it."""
    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        silent_people(h, 2)
        order: list[str] = []
        rescore = Engine._rescore
        monkeypatch.setattr(
            Engine, "_rescore", lambda e, *a: (order.append("rescore"), rescore(e, *a))[1]
        )
        step = sweep.Sweep.step
        monkeypatch.setattr(
            sweep.Sweep, "step", lambda s, *a: (order.append("chunk"), step(s, *a))[1]
        )
        inside, go = threading.Event(), threading.Event()

        def busy(_conn: Any) -> None:
            inside.set()
            go.wait(30)

        h.engine.processor.request(busy)
        assert inside.wait(30)
        # The processor is busy: a sweep asked for now stays queued, then the playbook
        # changes a model (and the segment) before it runs.
        h.engine._request_sweep("default")
        changed = Path(playbook_with_journeys(tmp_path, WINBACK, "changed.yaml"))
        text = changed.read_text("utf-8")
        changed.write_text(text.replace("points: 15", "points: 16", 1), "utf-8")
        take_up(h, str(changed))
        go.set()
        h.advance(0)
        assert order[0] == "rescore" and "chunk" in order
        assert [c for c in order if c == "rescore"] == ["rescore"]


def test_a_chunk_the_database_failed_is_tried_again_without_a_restart(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost connection (or a writer that is full) says nothing about the sweep: its chunk
    is tried again at the next round, where another error ends it until the next start."""
    from leadloop.errors import StorageError

    monkeypatch.setattr(sweep, "CHUNK", 1)
    failed: list[int] = []
    real = sweep.sweep_chunk

    def lose_connection_once(*args: Any) -> Any:
        if len(failed) == 0 and args[4][0].id == pids[1]:
            failed.append(1)
            raise StorageError("the connection to the database was lost")
        return real(*args)

    with running(backend_url, playbook_with_journeys(tmp_path, BEFORE)) as h:
        pids = list(silent_people(h, 3))
        monkeypatch.setattr(sweep, "sweep_chunk", lose_connection_once)
        seen = chunks_seen(monkeypatch)
        apply(h, tmp_path, WINBACK, "winback.yaml")
        assert failed == [1]
        assert [c for c in seen if c] == [(pid,) for pid in pids]
        assert [instances(h, pid, "winback") for pid in pids] == [[DONE]] * 3
