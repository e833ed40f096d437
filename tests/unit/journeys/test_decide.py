"""Pure journey decisions: splits and holdouts are stable, a stale timer changes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from leadloop.journeys import decide
from leadloop.journeys.model import (
    WINDOW_OVER,
    EmitEvent,
    EventTrigger,
    ExitStep,
    Journey,
    Membership,
    QueueSend,
    Reentry,
    ScheduleWake,
    SendStep,
    SplitPath,
    SplitStep,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
)
from leadloop.log.model import Event
from leadloop.policy.model import PolicyConfig, Recipient
from leadloop.scoring.model import EventFilter

T0 = 1_800_000_000.0


@dataclass
class FakeFacts:
    traits: dict[str, Any] = field(default_factory=lambda: {"email": "a@b.test"})

    def score(self, model: str) -> float | None:
        return None

    def stage(self, model: str) -> str | None:
        return None

    def event_count(self, name: str, since: float | None, where: Any) -> int:
        return 0

    def recipient(self) -> Recipient:
        return Recipient(self.traits)


def journey(holdout: float = 0.0, reentry: Reentry | None = None) -> Journey:
    return Journey(
        id="j",
        version="v1",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(
            SplitStep("split", (SplitPath("a", 1, "send_a"), SplitPath("b", 3, "wait"))),
            SendStep("send_a", ("email",), "a"),
            WaitStep("wait", duration=3600, next=None),
        ),
        holdout=holdout,
        reentry=reentry or Reentry(),
    )


def tracked(name: str, at: float, **properties: Any) -> Event:
    return Event(
        seq=1,
        workspace_id="ws",
        message_id="x",
        type="track",
        event=name,
        timestamp=at,
        received_at=at,
        body={"properties": properties},
    )


def enter(j: Journey, pid: str, membership: Membership | None = None) -> Any:
    return decide.enter_journey(
        j, membership or Membership(), "ws", pid, f"m-{pid}", FakeFacts(), PolicyConfig(), T0
    )


@settings(max_examples=200, deadline=None)
@given(pid=st.text(min_size=1, max_size=20))
def test_entering_is_deterministic(pid: str) -> None:
    assert enter(journey(0.3), pid) == enter(journey(0.3), pid)


def test_split_weights_and_holdout_shares_are_close_to_configured() -> None:
    j = journey(holdout=0.2)
    results = [enter(j, f"p{i}")[1] for i in range(4000)]
    held = sum(1 for a in results if a.instance.holdout)
    assert 0.17 < held / 4000 < 0.23
    treated = [a for a in results if not a.instance.holdout]
    waited = sum(1 for a in treated if a.instance.step == "wait")
    assert 0.71 < waited / len(treated) < 0.79
    window = T0 + j.conversion_window  # held out: nothing but the window's end
    assert all(a.effects == (ScheduleWake(window, 1),) for a in results if a.instance.holdout)


def test_a_holdout_entered_before_the_window_timer_ends_on_its_next_event_past_it() -> None:
    """Held-out instances stored without a window timer stayed live for good: converted by
    any later purchase, and never entering again under `reentry: always`."""
    j = journey(holdout=0.5)
    held = next(a.instance for a in (enter(j, f"h{i}")[1] for i in range(50)) if a.instance.holdout)
    legacy = msgspec.structs.replace(held, wake="", due_at=None, token=0)
    later = T0 + j.conversion_window
    bought = tracked("Order Completed", later)
    ended = decide.on_event(legacy, j, bought, (), FakeFacts(), PolicyConfig(), later)
    assert ended is not None
    assert (ended.instance.status, ended.instance.reason) == ("ended", WINDOW_OVER)
    assert decide.on_event(legacy, j, bought, (), FakeFacts(), PolicyConfig(), later - 1) is None


def test_a_stale_timer_changes_nothing_and_reentry_rules_hold() -> None:
    j = journey()
    _m, advance = enter(j, "p-wait-0")
    waiting = next(
        enter(j, f"p{i}")[1].instance
        for i in range(100)
        if enter(j, f"p{i}")[1].instance.step == "wait"
    )
    assert (
        decide.on_timer(waiting, j, waiting.token - 1, FakeFacts(), PolicyConfig(), T0 + 3600)
        is None
    )
    done = decide.on_timer(waiting, j, waiting.token, FakeFacts(), PolicyConfig(), T0 + 3600)
    assert done is not None and done.instance.status == "completed"
    assert decide.may_enter(j, Membership(entries=1), T0) == "re-entry: once"
    every = journey(reentry=Reentry("every", 86400))
    assert decide.may_enter(every, Membership(entries=1, last_entered_at=T0), T0 + 3600) is not None
    assert decide.may_enter(every, Membership(entries=1, last_entered_at=T0), T0 + 86400) is None
    assert advance is not None


def _daily_loop(minutes: int) -> Journey:
    """Wait until the local time `minutes` after midnight, send, wait again."""
    return Journey(
        id="digest",
        version="v1",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(
            WaitStep("wait", until_time=minutes, next="send"),
            SendStep("send", ("email",), "digest", next="wait"),
        ),
    )


def test_a_daily_loop_sends_once_when_its_time_of_day_wait_falls_due() -> None:
    daily = _daily_loop(9 * 60 + 30)
    _m, entered = enter(daily, "p")
    waiting = entered.instance
    due = waiting.due_at
    assert due is not None and due > T0
    # The timer fires at 09:30 itself, and the loop comes back to the wait at that instant.
    woken = decide.on_timer(waiting, daily, waiting.token, FakeFacts(), PolicyConfig(), due)
    assert woken is not None
    assert len([e for e in woken.effects if isinstance(e, QueueSend)]) == 1
    assert (woken.instance.step, woken.instance.due_at) == ("wait", due + 86400)


def test_engagement_is_recorded_with_implied_steps() -> None:
    j = journey()
    instance = next(
        a.instance for a in (enter(j, f"q{i}")[1] for i in range(100)) if a.instance.messages
    )
    mid = next(iter(instance.messages.values()))
    event = tracked("Email Link Clicked", T0, message_id=mid)
    updated = decide.record_engagement(instance, event)
    assert updated.engagement[mid] == ["delivered", "opened", "clicked"]


def test_a_waiting_instance_migrated_to_a_step_that_does_not_wait_runs_that_step() -> None:
    """Its timer took the mapped step for a wait that was over and went to the step's `next`:
    an update step's change was never made, an exit's outcome never given, a branch's cases
    never read (no `next`: the instance completed)."""
    old = Journey(
        id="j",
        version="v1",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(WaitStep("pause", duration=3600, next=None),),
    )
    new = Journey(
        id="j",
        version="v2",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(
            WaitStep("hold", duration=3600, next="tag"),
            UpdateProfileStep("tag", {}, ("nurtured",), (), None, None, "done"),
            ExitStep("done", "converted", "migrated out"),
        ),
        migrate={"pause": "tag"},
    )
    _m, entered = enter(old, "p")
    moved = decide.migrate_instance(entered.instance, new, T0 + 60)
    assert moved is not None and moved.instance.wake == "wait"
    fired = decide.on_timer(
        moved.instance, new, moved.instance.token, FakeFacts(), PolicyConfig(), T0 + 3600
    )
    assert fired is not None
    assert [e.properties["add_tags"] for e in fired.effects if isinstance(e, EmitEvent)] == [
        ["nurtured"]
    ]
    assert (fired.instance.status, fired.instance.reason) == ("converted", "migrated out")


NIGHTLY = _daily_loop(2 * 60 + 30)
BERLIN = PolicyConfig(default_timezone="Europe/Berlin")


def _utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def _nightly_from(pid: str, at: float) -> Any:
    """The instance of a nightly 02:30 Berlin loop entered at `at`, waiting."""
    entered = decide.enter_journey(
        NIGHTLY, Membership(), "ws", pid, f"m-{pid}", FakeFacts(), BERLIN, at
    )[1]
    assert entered is not None
    return entered.instance


def _woken(waiting: Any) -> Any:
    woken = decide.on_timer(waiting, NIGHTLY, waiting.token, FakeFacts(), BERLIN, waiting.due_at)
    assert woken is not None
    assert len([e for e in woken.effects if isinstance(e, QueueSend)]) == 1
    return woken.instance


def test_a_wait_until_a_time_the_clocks_skip_ends_just_after_the_gap() -> None:
    # Berlin jumps from 02:00 CET to 03:00 CEST at 01:00 UTC on 2027-03-28: 02:30 does not
    # occur that day; it reads as 02:30 CET, that is 03:30 CEST, an hour after the gap.
    waiting = _nightly_from("p", _utc(2027, 3, 28, 0, 10))
    assert waiting.due_at == _utc(2027, 3, 28, 1, 30)
    assert _woken(waiting).due_at == _utc(2027, 3, 29, 0, 30)  # 02:30 CEST the next night


def test_a_daily_loop_through_a_time_the_clocks_repeat_sends_once_that_night() -> None:
    # Berlin goes back from 03:00 CEST to 02:00 CET at 01:00 UTC on 2027-10-31: 02:30 occurs
    # at 00:30 and 01:30 UTC. The timer fires at the first; the loop waits for the next night.
    waiting = _nightly_from("p", _utc(2027, 10, 30, 12, 0))
    assert waiting.due_at == _utc(2027, 10, 31, 0, 30)
    assert _woken(waiting).due_at == _utc(2027, 11, 1, 1, 30)  # 02:30 CET, not 01:30 UTC
    # Entered in the repeated hour's second pass (02:10 CET), 02:30 CET is 20 minutes on.
    assert _nightly_from("q", _utc(2027, 10, 31, 1, 10)).due_at == _utc(2027, 10, 31, 1, 30)
    # Entered in its first pass after 02:30 CEST (02:45 CEST): 02:30 has been, the next night.
    assert _nightly_from("r", _utc(2027, 10, 31, 0, 45)).due_at == _utc(2027, 11, 1, 1, 30)


def test_a_wait_for_timeout_below_a_float_step_still_waits_past_now() -> None:
    # `timeout: 1e-9` passes validation, and `T0 + 1e-9` is T0: the timer of a wait_for reached
    # again from its own timeout (a loop) was due when the timer being handled was, fired
    # under its event id and was dropped as a duplicate; the instance waited for ever.
    j = Journey(
        id="j",
        version="v1",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(WaitForStep("answer", EventFilter(names=("Replied",)), 1e-9),),
    )
    _, advance = enter(j, "p1")
    (wake,) = [e for e in advance.effects if isinstance(e, ScheduleWake)]
    assert wake.due_at > T0
