"""Segments that time alone changes, through the real processor on a manual clock, on both
backends: a profile whose events leave a `within` window is re-evaluated by a durable timer at
the instant they leave, not at its next event (which, for a silent person, never comes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from leadloop.channels import records
from leadloop.log.rebuild import reset_derived_state
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import DAY, HOUR, flows, instances, person, timers, track
from tests.contract.test_journeys_seed import journey_harness, playbook_with_journeys

pytestmark = pytest.mark.usefixtures("channels_env")

DONE = ("completed", None, "reached the end")


def segment_flows(*journeys: tuple[str, tuple[str, ...]], reentry: str = "always") -> str:
    """A journeys section: per (id, conditions), a journey entered on the segment of those
    conditions (YAML flow mappings) that sends one email, the template named as the journey."""
    flows = []
    for journey, conditions in journeys:
        listed = "".join(f"\n          - {c}" for c in conditions)
        flows.append(
            f"""
    - id: {journey}
      entry:
        segment:{listed}
      reentry: {reentry}
      steps:
        - {{ id: {journey}, type: send, channel: email, template: {journey} }}"""
        )
    names = ", ".join(journey for journey, _ in journeys)
    return f"""
journeys:
  templates:
    email: [{names}]
  flows:{"".join(flows)}
"""


def segment_flow(journey: str, *conditions: str, reentry: str = "always") -> str:
    return segment_flows((journey, conditions), reentry=reentry)


# Visited once, but not in the last 30 days: a win-back. Without the first condition a
# profile that never visited would be in the segment from its first event.
SILENCE = ("{ event: Visited }", "{ event: Visited, within: 30d, not: true }")
WINBACK = segment_flow("winback", *SILENCE)
ONCE = segment_flow("winback", *SILENCE, reentry="once")


def _entered(h: Harness, pid: str) -> list[float]:
    rows = h.sql(
        "SELECT entered_at FROM journey_instances WHERE profile_id = ? ORDER BY entered_at", pid
    )
    return [float(r[0]) for r in rows]


def _visits(h: Harness, pid: str) -> list[float]:
    rows = h.sql(
        "SELECT received_at FROM events WHERE profile_id = ? AND event = 'Visited' "
        "ORDER BY received_at",
        pid,
    )
    return [float(r[0]) for r in rows]


def test_a_silent_profile_enters_a_win_back_segment_when_its_visit_leaves_the_window(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, WINBACK) as h:
        pid = person(h, "w")
        track(h, "w", "Visited")
        [visit] = _visits(h, pid)
        assert instances(h, pid, "winback") == []
        h.advance(30 * DAY - HOUR)
        assert instances(h, pid, "winback") == []
        h.advance(2 * HOUR)
        assert instances(h, pid, "winback") == [DONE]
        [entered] = _entered(h, pid)
        assert visit + 30 * DAY < entered < visit + 30 * DAY + 1e-3
        # Still silent, still in the segment: entered exactly once, and nothing left waiting.
        h.advance(90 * DAY)
        assert instances(h, pid, "winback") == [DONE]
        assert timers(h, pid, "segment") == []


def test_a_visit_within_the_window_moves_the_re_evaluation(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, WINBACK) as h:
        pid = person(h, "m")
        track(h, "m", "Visited")
        h.advance(20 * DAY)
        track(h, "m", "Visited")
        first, second = _visits(h, pid)
        assert second - first == 20 * DAY
        h.advance(15 * DAY)  # 30 days after the first visit, 15 after the second
        assert instances(h, pid, "winback") == []
        h.advance(16 * DAY)
        assert instances(h, pid, "winback") == [DONE]
        [entered] = _entered(h, pid)
        assert second + 30 * DAY < entered < second + 30 * DAY + 1e-3
        assert len(timers(h, pid, "segment")) <= 1


def test_re_entry_after_time_follows_the_journeys_rule(backend_url: str, tmp_path: Path) -> None:
    with flows(backend_url, tmp_path, WINBACK) as h:
        pid = person(h, "a")
        track(h, "a", "Visited")
        h.advance(31 * DAY)
        assert instances(h, pid, "winback") == [DONE]
        h.advance(9 * DAY)
        track(h, "a", "Visited")  # out of the segment again
        h.advance(29 * DAY)
        assert instances(h, pid, "winback") == [DONE]
        h.advance(2 * DAY)  # `always`: a second silence, a second entry
        assert instances(h, pid, "winback") == [DONE, DONE]
    with flows(backend_url, tmp_path, ONCE) as h:
        pid = person(h, "o")
        track(h, "o", "Visited")
        h.advance(31 * DAY)
        assert instances(h, pid, "winback") == [DONE]
        track(h, "o", "Visited")
        # `once`: it can never enter again, so no timer watches its segment any more.
        assert timers(h, pid, "segment") == []
        h.advance(31 * DAY)
        assert instances(h, pid, "winback") == [DONE]


NO_WINDOW = segment_flows(
    ("plain", ("{ event: Visited, op: gte, value: 2 }", "{ trait: plan, op: equals, value: pro }")),
    ("anyone", ("{ event: Visited }",)),
)


def test_segments_without_a_window_schedule_no_timer(backend_url: str, tmp_path: Path) -> None:
    with flows(backend_url, tmp_path, NO_WINDOW) as h:
        pid = person(h, "n", plan="pro")
        for _ in range(3):
            track(h, "n", "Visited")
        assert len(instances(h, pid, "plain")) == 1
        assert timers(h, pid, "segment") == []


BOTH = segment_flows(
    ("winback", SILENCE), ("recent", ("{ event: Visited, within: 7d, op: gte, value: 2 }",))
)


def test_timers_are_one_per_segment_journey_not_one_per_event(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, BOTH) as h:
        pid = person(h, "b")
        for _ in range(6):
            track(h, "b", "Visited")
            h.advance(HOUR)
        # One timer for `winback`, which none of the views moved; none for `recent`, which time
        # only takes profiles out of (the next event sees the views gone).
        keys = h.sql("SELECT key FROM timers WHERE profile_id = ? AND key LIKE ?", pid, "segment:%")
        assert [str(r[0]) for r in keys] == [f"segment:winback:{pid}"]
        [due] = timers(h, pid, "segment")
        assert due < _visits(h, pid)[0] + 30 * DAY + 1e-3  # set by the first view, kept
        assert len(instances(h, pid, "recent")) == 1
        # The views leave the 7-day window: `recent` is left by time, `winback` entered later.
        h.advance(8 * DAY)
        h.advance(23 * DAY)
        assert instances(h, pid, "winback") == [DONE]
        track(h, "b", "Visited")
        track(h, "b", "Visited")  # back in `recent`: it left at day 7, so a second entry
        assert len(instances(h, pid, "recent")) == 2


OPENED = segment_flow("opener", "{ event: Email Opened, within: 7d }")


def _open(h: Harness, pid: str, key: str) -> None:
    """An open as the tracking pixel records it: an engine event naming the profile."""
    now = h.engine.clock.now()
    h.engine.writer.submit(
        lambda c: records.emit(
            c, "default", f"open-{key}", "Email Opened", pid, {"message_id": key}, now, now
        )
    ).result(timeout=30)
    h.settle()


def test_an_email_open_counts_in_a_segment_when_it_happens(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, OPENED) as h:
        pid = person(h, "e")
        _open(h, pid, "m1")
        assert len(instances(h, pid, "opener")) == 1
        # The open leaves the window at day 7 (no timer: time only takes the profile out),
        # and the next open sees it gone: a second entry.
        h.advance(8 * DAY)
        _open(h, pid, "m2")
        assert len(instances(h, pid, "opener")) == 2


COOLED = segment_flow(
    "cooled", "{ event: Lead Magnet Downloaded }", "{ score: lead, op: lt, value: 5 }"
)


def test_a_score_decaying_under_a_segments_test_enters_at_the_decay_step(
    backend_url: str, tmp_path: Path
) -> None:
    """The example model takes 20 points after 30 days without activity: the download's 15
    are gone at that step, a timer firing, and the profile enters then."""
    with flows(backend_url, tmp_path, COOLED) as h:
        pid = person(h, "c")
        track(h, "c", "Lead Magnet Downloaded")
        h.advance(29 * DAY)
        assert instances(h, pid, "cooled") == []
        h.advance(2 * DAY)
        assert instances(h, pid, "cooled") == [DONE]
        [entered] = _entered(h, pid)
        [download] = h.sql(
            "SELECT received_at FROM events WHERE profile_id = ? AND event = ?",
            pid,
            "Lead Magnet Downloaded",
        )
        assert entered == float(download[0]) + 30 * DAY


def _snapshot(h: Harness) -> tuple[object, ...]:
    """What a replay of the log must give again: instances, timers, outbox rows."""
    return (
        h.sql("SELECT id, status, entered_at FROM journey_instances ORDER BY id"),
        h.sql("SELECT key, due_at FROM timers ORDER BY key"),
        h.sql("SELECT idempotency_key FROM outbox ORDER BY idempotency_key"),
    )


def _replay(h: Harness) -> None:
    """Derived state reset, and the log processed again from its start."""
    h.engine.writer.submit(reset_derived_state).result()
    h.engine.processor.wake()
    h.settle()


def test_a_replay_of_the_log_enters_the_same_way_and_leaves_the_same_timers(
    backend_url: str, tmp_path: Path
) -> None:
    """The timer's firing is an event of the log, decided at its due time: replaying the log
    decides the entry again, the same, and sends nothing twice."""
    with flows(backend_url, tmp_path, WINBACK) as h:
        pid = person(h, "r")
        track(h, "r", "Visited")
        h.advance(31 * DAY)
        track(h, "r", "Visited")
        h.advance(10 * DAY)

        before = _snapshot(h)
        assert instances(h, pid, "winback") == [DONE] and timers(h, pid, "segment") != []
        _replay(h)
        assert _snapshot(h) == before


def fading_playbook(tmp_path: Path, fragment: str, name: str = "pb.yaml") -> str:
    """The example playbook with `fragment` as its journeys and the `lead` model's points
    halving every 10 days instead of its step decay: no decay timer ever fires."""
    path = Path(playbook_with_journeys(tmp_path, fragment, name))
    text = path.read_text("utf-8")
    step = "      decay:\n        step: { points: 20, every: 30d }\n"
    assert step in text
    path.write_text(text.replace(step, "      decay:\n        half_life: 10d\n"), "utf-8")
    return str(path)


def _fading(backend_url: str, tmp_path: Path, fragment: str) -> Harness:
    h = journey_harness(backend_url, fading_playbook(tmp_path, fragment))
    h.engine.dispatcher.senders.pop("webhook", None)
    return h


# 15 points for the download, below 5 once a third is left: log2(3) half-lives later.
FADED_CONDITIONS = ("{ event: Lead Magnet Downloaded }", "{ score: lead, op: lt, value: 5 }")
FADED = segment_flow("faded", *FADED_CONDITIONS)
FADED_AFTER = 10 * DAY * math.log2(3)


def _download(h: Harness, user: str) -> tuple[str, float]:
    pid = person(h, user)
    track(h, user, "Lead Magnet Downloaded")
    [row] = h.sql(
        "SELECT received_at FROM events WHERE profile_id = ? AND event = ?",
        pid,
        "Lead Magnet Downloaded",
    )
    return pid, float(row[0])


def test_a_silent_profile_enters_when_its_score_fades_under_the_segments_test(
    backend_url: str, tmp_path: Path
) -> None:
    """Half-life decay sets no timer of its own: the segment's timer is due at the instant
    the score read then passes the test, not at a next event that never comes."""
    h = _fading(backend_url, tmp_path, FADED)
    try:
        pid, download = _download(h, "f")
        # A score is read to 6 decimals: under 5 a fraction of a second after the exact 5.
        [due] = timers(h, pid, "segment")
        assert download + FADED_AFTER < due < download + FADED_AFTER + 1
        h.advance(FADED_AFTER - HOUR)
        assert instances(h, pid, "faded") == []
        h.advance(2 * HOUR)
        assert instances(h, pid, "faded") == [DONE]
        assert _entered(h, pid) == [due]
        # In for good while silent (the score only goes on fading): nothing left waiting.
        assert timers(h, pid, "segment") == []
        h.advance(90 * DAY)
        assert instances(h, pid, "faded") == [DONE]
    finally:
        h.engine.stop()


FADING_OUT = segment_flows(
    ("hot", ("{ event: Lead Magnet Downloaded }", "{ score: lead, op: gte, value: 10 }")),
    ("faded_pro", (*FADED_CONDITIONS, "{ trait: plan, op: equals, value: pro }")),
)


def test_no_timer_where_fading_cannot_bring_the_profile_in(
    backend_url: str, tmp_path: Path
) -> None:
    """A score over a threshold only fades out of it, and a trait keeps the profile out of
    the other segment whatever its score: neither gets a timer."""
    h = _fading(backend_url, tmp_path, FADING_OUT)
    try:
        pid, _download_at = _download(h, "n")
        assert instances(h, pid, "hot") == [DONE]
        assert timers(h, pid, "segment") == []
        h.advance(30 * DAY)
        assert instances(h, pid, "faded_pro") == []
    finally:
        h.engine.stop()


def _fade_twice(h: Harness, user: str) -> str:
    """A download whose points fade under 5, another 20 days on (15 more points: back over,
    and a new crossing to come), faded again 40 days on; the profile's id."""
    pid, _download_at = _download(h, user)
    h.advance(20 * DAY)
    track(h, user, "Lead Magnet Downloaded")
    h.advance(40 * DAY)
    return pid


def test_a_replay_of_the_log_enters_on_fading_the_same_way(
    backend_url: str, tmp_path: Path
) -> None:
    h = _fading(backend_url, tmp_path, FADED)
    try:
        pid = _fade_twice(h, "r")
        before = _snapshot(h)
        assert instances(h, pid, "faded") == [DONE, DONE]
        _replay(h)
        assert _snapshot(h) == before
    finally:
        h.engine.stop()
