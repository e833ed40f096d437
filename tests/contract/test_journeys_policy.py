"""The contact policy as journeys meet it, on both backends: suppressions recorded from
`Unsubscribed` and `Email Bounced` events, and transactional sends next to a frequency cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leadloop.channels import records
from tests.contract.journeys_helpers import (
    DAY,
    START,
    flows,
    instances,
    person,
    sends,
    templates,
    track,
)

pytestmark = pytest.mark.usefixtures("channels_env")

POLICY = """
journeys:
  templates:
    email: [promo, receipt]
  policy:
    caps:
      - { max: 1, per: 1d }
  flows:
    - id: promo
      entry: { event: Promo }
      reentry: always
      steps:
        - { id: promo, type: send, channel: email, template: promo, otherwise: gave_up }
        - { id: gave_up, type: exit, reason: nobody to send to }
    - id: receipt
      entry: { event: Order Completed }
      reentry: always
      steps:
        - { id: receipt, type: send, channel: email, template: receipt, transactional: true }
"""
DONE = ("completed", None, "reached the end")


def test_an_unsubscribed_event_suppresses_the_next_journey_send_with_its_reason(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, POLICY) as h:
        gone, elsewhere = person(h, "gone"), person(h, "elsewhere")
        track(h, "gone", "Unsubscribed")  # no channel: email
        track(h, "elsewhere", "Unsubscribed", channel="whatsapp")
        assert h.sql(
            "SELECT profile_id, channel, reason, created_at FROM suppressions ORDER BY channel"
        ) == [
            (gone, "email", "unsubscribed", START),
            (elsewhere, "whatsapp", "unsubscribed", START),
        ]
        prof = h.profile("user_id", "gone")
        assert prof is not None and "unsubscribed" not in prof["traits"]  # the list, not a trait
        track(h, "gone", "Promo")
        track(h, "elsewhere", "Promo")
        assert templates(h, gone) == []
        assert sends(h, gone) == [
            (
                "promo",
                "suppressed",
                "no channel can carry it: email: suppressed: unsubscribed",
                None,
            )
        ]
        assert instances(h, gone, "promo") == [("exited", "gave_up", "nobody to send to")]
        assert templates(h, elsewhere) == ["promo"]  # a WhatsApp opt-out leaves email alone
        assert instances(h, elsewhere, "promo") == [DONE]
        # A transactional message ignores an unsubscribe, but not a bounce.
        track(h, "gone", "Order Completed")
        assert templates(h, gone) == ["receipt"]
        track(h, "gone", "Email Bounced")
        track(h, "gone", "Order Completed")
        assert templates(h, gone) == ["receipt"]
        assert sends(h, gone)[1:] == [
            ("receipt", "queued", "", None),
            ("receipt", "suppressed", "no channel can carry it: email: suppressed: bounced", None),
        ]
        assert instances(h, gone, "receipt") == [DONE, DONE]


def test_the_channels_own_unsubscribe_and_bounce_events_suppress_journey_sends(
    backend_url: str, tmp_path: Path
) -> None:
    """A one-click unsubscribe and a bounce receipt reach the log as the engine's own
    (`internal`) events; the journeys' policy must hear them too, or a journey keeps queueing
    messages the channel then refuses, and never takes its `otherwise` path."""
    with flows(backend_url, tmp_path, POLICY) as h:
        link, bounce = person(h, "link"), person(h, "bounce")

        def emit(pid: str, name: str, source: str) -> None:
            props: dict[str, Any] = {"channel": "email", "message_id": f"m-{pid}", "source": source}
            now = h.engine.clock.now()
            h.engine.writer.submit(
                lambda c: records.emit(c, "default", f"t-{pid}", name, pid, props, now, now)
            ).result()
            h.settle()

        emit(link, "Unsubscribed", "one-click")
        emit(bounce, "Email Bounced", "receipt")
        assert h.sql("SELECT profile_id, channel, reason FROM suppressions ORDER BY reason") == [
            (bounce, "email", "bounced"),
            (link, "email", "unsubscribed"),
        ]
        track(h, "link", "Promo")
        track(h, "bounce", "Promo")
        assert templates(h, link) == templates(h, bounce) == []
        assert instances(h, link, "promo") == [("exited", "gave_up", "nobody to send to")]
        assert instances(h, bounce, "promo") == [("exited", "gave_up", "nobody to send to")]


def test_a_soft_bounce_does_not_suppress_journey_sends_and_a_hard_one_does(
    backend_url: str, tmp_path: Path
) -> None:
    """A soft bounce receipt is `Email Bounced` with `permanent: false` (docs/channels.md: soft
    bounces are only recorded); it must not put the profile on the list, where "bounced" would
    stop even its receipts for good."""
    with flows(backend_url, tmp_path, POLICY) as h:
        pid = person(h, "full")

        def bounce(event_id: str, permanent: bool) -> None:
            props = {"channel": "email", "message_id": "m-1", "permanent": permanent}
            now = h.engine.clock.now()
            h.engine.writer.submit(
                lambda c: records.emit(
                    c, "default", event_id, "Email Bounced", pid, props, now, now
                )
            ).result()
            h.settle()

        bounce("soft", False)
        assert h.sql("SELECT profile_id FROM suppressions") == []
        track(h, "full", "Order Completed")
        assert templates(h, pid) == ["receipt"]
        bounce("hard", True)
        assert h.sql("SELECT profile_id, reason FROM suppressions") == [(pid, "bounced")]


def test_a_transactional_send_is_not_held_back_by_a_frequency_cap(
    backend_url: str, tmp_path: Path
) -> None:
    with flows(backend_url, tmp_path, POLICY) as h:
        pid = person(h, "busy")
        track(h, "busy", "Order Completed")  # transactional: does not count toward the cap
        track(h, "busy", "Promo")  # the cap's one marketing message of the day
        track(h, "busy", "Promo")  # capped: deferred a day
        track(h, "busy", "Order Completed")  # the cap is full, but this is transactional
        assert templates(h, pid) == ["receipt", "promo", "receipt"]
        assert sends(h, pid) == [
            ("receipt", "queued", "", None),
            ("promo", "queued", "", None),
            ("promo", "deferred", "frequency cap: deferred to 2027-01-16 08:00 UTC", START + DAY),
            ("receipt", "queued", "", None),
        ]
        # Both promo instances entered at the same instant: compare them as a set.
        assert sorted(instances(h, pid, "promo")) == [DONE, ("waiting", "promo", "")]
        h.advance(DAY)
        assert templates(h, pid) == ["receipt", "promo", "receipt", "promo"]
        assert instances(h, pid, "promo") == [DONE, DONE]


def test_an_unsubscribe_after_a_complaint_or_a_bounce_still_stops_transactional_sends(
    backend_url: str, tmp_path: Path
) -> None:
    """The list holds one row per profile and channel: a later unsubscribe must not replace
    the complaint or bounce that stops even receipts (and a merge must not drop one either)."""
    with flows(backend_url, tmp_path, POLICY) as h:
        spam, bounced = person(h, "spam"), person(h, "bounced")
        track(h, "spam", "Spam Reported")
        track(h, "spam", "Unsubscribed")
        track(h, "bounced", "Email Bounced")
        track(h, "bounced", "Unsubscribed")
        assert h.sql("SELECT profile_id, reason FROM suppressions ORDER BY reason") == [
            (bounced, "bounced"),
            (spam, "complained"),
        ]
        track(h, "spam", "Order Completed")
        track(h, "bounced", "Order Completed")
        assert templates(h, spam) == templates(h, bounced) == []
        # A complaint then an unsubscribe in one batch: the row keeps the complaint too.
        both = person(h, "both")
        h.send(
            {"type": "track", "userId": "both", "event": "Email Complained"},
            {"type": "track", "userId": "both", "event": "Unsubscribed"},
        )
        h.settle()
        assert h.sql("SELECT reason FROM suppressions WHERE profile_id = ?", both) == [
            ("complained",)
        ]
        # A visitor whose address bounced merges into a known user who had unsubscribed.
        h.send(
            {"type": "identify", "anonymousId": "visitor", "traits": {"email": "v@x.test"}},
            {"type": "track", "anonymousId": "visitor", "event": "Email Bounced"},
        )
        h.settle()
        known = person(h, "known")
        track(h, "known", "Unsubscribed")
        h.send({"type": "identify", "userId": "known", "anonymousId": "visitor"})
        h.settle()
        survivor = h.profile("user_id", "known")
        assert survivor is not None and survivor["id"] == known
        assert h.sql("SELECT reason FROM suppressions WHERE profile_id = ?", known) == [
            ("bounced",)
        ]


LATE_WAKE = (
    POLICY
    + """
    - id: later
      entry: { event: Go }
      steps:
        - { id: pause, type: wait, duration: 1h, next: later }
        - { id: later, type: send, channel: email, template: promo }
"""
)


def test_a_wake_up_fired_after_a_send_it_is_due_before_still_counts_that_send(
    backend_url: str, tmp_path: Path
) -> None:
    """A timer reaches the log when the timer loop fires it (every 0.1 s, or later behind a
    wave of wake-ups), but is decided at its due time: a send the log already holds from an
    event received in between is earlier in the log, and counts against the cap."""
    with flows(backend_url, tmp_path, LATE_WAKE) as h:
        pid = person(h, "late")
        track(h, "late", "Go")
        assert h.engine.manual_clock is not None
        h.engine.manual_clock.advance(3600 + 2)  # the wait ended 2 s ago; not fired yet
        track(h, "late", "Promo")
        assert templates(h, pid) == ["promo"]
        h.engine.timers.fire_now()
        h.settle()
        assert templates(h, pid) == ["promo"]  # one message a day, not two within seconds
        assert sends(h, pid)[-1] == (
            "later",
            "deferred",
            "frequency cap: deferred to 2027-01-16 09:00 UTC",
            START + 3600 + 2 + DAY,
        )
