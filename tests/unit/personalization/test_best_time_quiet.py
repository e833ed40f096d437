"""A `best_time` wait never ends inside quiet hours that cover every channel: the send after it
would only be deferred to their end, which is not the hour the profile engages at."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from leadloop.journeys import decide
from leadloop.journeys.model import (
    EventTrigger,
    Journey,
    Membership,
    ScheduleWake,
    SendStep,
    WaitStep,
)
from leadloop.policy.model import PolicyConfig, QuietHours
from leadloop.scoring.model import EventFilter
from tests.unit.journeys.test_decide import T0, FakeFacts

DAY = 86_400.0


@dataclass
class NightOwl(FakeFacts):
    """Opens at 23:00 UTC, night after night."""

    times: list[float] = field(
        default_factory=lambda: [T0 - d * DAY + 15 * 3600 for d in range(1, 13)]
    )

    def engagement_times(self) -> list[float]:
        return self.times

    def channel_history(self) -> dict[str, tuple[int, int]]:
        return {}


def wait_ends(policy: PolicyConfig, pid: str) -> float:
    journey = Journey(
        id="j",
        version="v1",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(WaitStep("best", best_time=DAY, next="mail"), SendStep("mail", ("email",), "d")),
    )
    _m, advance = decide.enter_journey(
        journey, Membership(), "ws", pid, f"m-{pid}", NightOwl(), policy, T0
    )
    assert advance is not None
    (wake,) = [e for e in advance.effects if isinstance(e, ScheduleWake)]
    return wake.due_at


def test_the_best_hour_is_one_a_send_may_go_out_at() -> None:
    assert datetime.fromtimestamp(NightOwl().times[0], UTC).hour == 23
    # Without quiet hours the habit decides: 23:00.
    assert datetime.fromtimestamp(wait_ends(PolicyConfig(), "p0"), UTC).hour in (22, 23, 0)
    quiet = PolicyConfig(quiet_hours=QuietHours(21 * 60, 8 * 60))
    hours = {datetime.fromtimestamp(wait_ends(quiet, f"p{i}"), UTC).hour for i in range(200)}
    assert hours and all(8 <= h < 21 for h in hours), sorted(hours)
    assert 20 in hours  # the waking hour nearest the habit, for most of them
    # Quiet hours of one channel only leave the habit alone (the wait cannot know its channel).
    sms_only = PolicyConfig(quiet_hours=QuietHours(21 * 60, 8 * 60, ("sms",)))
    assert datetime.fromtimestamp(wait_ends(sms_only, "p0"), UTC).hour in (22, 23, 0)
