"""`best_time` waits on the days the clocks change: an hour the clocks skip is not an hour of
that day, and its start is not the next hour's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadloop.journeys import decide
from leadloop.journeys.hashing import stable_fraction
from leadloop.journeys.model import EventTrigger, Journey, Membership, SendStep, WaitStep
from leadloop.personalization.send_time import EXPLORE
from leadloop.policy.model import PolicyConfig, Recipient
from leadloop.scoring.model import EventFilter


def _utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


@dataclass
class NightOwl:
    """Opened a dozen messages at 02:15 Berlin (01:15 UTC in winter)."""

    traits: dict[str, Any] = field(
        default_factory=lambda: {"email": "a@b.test", "timezone": "Europe/Berlin"}
    )

    def engagement_times(self) -> list[float]:
        return [_utc(2027, 3, day, 1, 15) for day in range(10, 22)]

    def recipient(self) -> Recipient:
        return Recipient(self.traits)


def _best(window: str, seconds: float) -> Journey:
    return Journey(
        id=f"best{window}",
        version="v1",
        trigger=EventTrigger(EventFilter(names=("Go",))),
        steps=(
            WaitStep("best", best_time=seconds, next="send"),
            SendStep("send", ("email",), "digest"),
        ),
    )


def _waiting(journey: Journey, at: float) -> tuple[float | None, str]:
    """The due time and path line of the first profile whose wait does not explore."""
    for n in range(100):
        entered = decide.enter_journey(
            journey,
            Membership(),
            "ws",
            f"p{n}",
            f"m{n}",
            NightOwl(),
            PolicyConfig(),
            at,  # type: ignore[arg-type]
        )[1]
        assert entered is not None
        if stable_fraction("best_time", f"{entered.instance.id}:best:1") >= EXPLORE:
            return entered.instance.due_at, entered.path[-1].detail
    raise AssertionError("every wait explored")


def test_on_the_spring_forward_day_the_skipped_hour_is_the_next_days() -> None:
    # Berlin jumps from 02:00 CET to 03:00 CEST at 01:00 UTC on 2027-03-28. At 01:10 CET the
    # night owl's 02:00 next comes on the 29th (00:00 UTC), inside a 24h window; 03:00 CEST
    # on the 28th is not 02:00, whatever the path line said.
    due, line = _waiting(_best("24h", 86400), _utc(2027, 3, 28, 0, 10))
    assert due == _utc(2027, 3, 29, 0, 0)
    assert line.startswith("best time 02:00 Europe/Berlin")


def test_a_window_shorter_than_the_way_to_the_next_real_hour_takes_another() -> None:
    # A 12h window from 01:10 CET holds no 02:00: the best hour left is 03:00 CEST, named so.
    due, line = _waiting(_best("12h", 12 * 3600), _utc(2027, 3, 28, 0, 10))
    assert due == _utc(2027, 3, 28, 1, 0)
    assert line.startswith("best time 03:00 Europe/Berlin")
