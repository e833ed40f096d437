"""The contact policy's pure decisions, with property tests where they fit."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadloop.policy.decide import decide_send, next_local_time, quiet_until
from leadloop.policy.model import (
    Cap,
    Defer,
    PolicyConfig,
    QuietHours,
    Recipient,
    Send,
    SendRequest,
    SentRecord,
    Suppress,
    Suppression,
)

T0 = datetime(2027, 1, 15, 12, 0, tzinfo=UTC).timestamp()  # noon UTC, a Friday
DAY = 86400.0
EMAIL = {"email": "a@b.test"}


def test_quiet_hours_defer_to_the_local_morning() -> None:
    config = PolicyConfig(quiet_hours=QuietHours(21 * 60, 8 * 60))
    # Noon UTC is 04:00 in Los Angeles: deferred to 08:00 there (16:00 UTC).
    verdict = decide_send(
        SendRequest(("email",)), Recipient({**EMAIL, "timezone": "America/Los_Angeles"}), config, T0
    )
    assert isinstance(verdict, Defer) and verdict.until == T0 + 4 * 3600
    assert "quiet hours" in verdict.reason
    # Transactional messages are exempt.
    assert isinstance(
        decide_send(
            SendRequest(("email",), True),
            Recipient({**EMAIL, "timezone": "America/Los_Angeles"}),
            config,
            T0,
        ),
        Send,
    )


def test_a_capped_channel_reroutes_and_a_cross_channel_cap_defers() -> None:
    sent = (SentRecord(T0 - 3600, "whatsapp"),)
    traits = {**EMAIL, "phone": "+1415", "whatsapp_opt_in": True}
    per_channel = PolicyConfig(
        caps=(Cap(1, DAY, ("whatsapp",)),), fallback={"whatsapp": ("email",)}
    )
    verdict = decide_send(SendRequest(("whatsapp",)), Recipient(traits, sent=sent), per_channel, T0)
    assert isinstance(verdict, Send) and verdict.channel == "email" and verdict.rerouted
    across = PolicyConfig(caps=(Cap(1, DAY),), fallback={"whatsapp": ("email",)})
    verdict = decide_send(SendRequest(("whatsapp",)), Recipient(traits, sent=sent), across, T0)
    assert isinstance(verdict, Defer) and verdict.until == T0 - 3600 + DAY


def test_consent_and_suppression() -> None:
    config = PolicyConfig()
    no_opt_in = decide_send(SendRequest(("whatsapp",)), Recipient({"phone": "+1"}), config, T0)
    assert isinstance(no_opt_in, Suppress) and "no consent" in no_opt_in.reason
    bounced = Recipient(EMAIL, suppressions=(Suppression("email", "bounced"),))
    assert isinstance(decide_send(SendRequest(("email",), True), bounced, config, T0), Suppress)
    unsubscribed = Recipient({**EMAIL, "unsubscribed": True})
    assert isinstance(decide_send(SendRequest(("email",)), unsubscribed, config, T0), Suppress)
    assert isinstance(decide_send(SendRequest(("email",), True), unsubscribed, config, T0), Send)
    assert isinstance(
        decide_send(SendRequest(("email",)), Recipient(EMAIL), PolicyConfig(channels=("sms",)), T0),
        Suppress,
    )


def test_next_local_time_crosses_dst() -> None:
    paris = ZoneInfo("Europe/Paris")
    before = datetime(2027, 3, 27, 12, 0, tzinfo=paris).timestamp()  # the day before DST starts
    due = next_local_time(before, paris, 9 * 60)
    assert datetime.fromtimestamp(due, paris).hour == 9
    assert datetime.fromtimestamp(due, paris).day == 28


def test_inside_the_repeated_hour_the_times_second_occurrence_is_next() -> None:
    # New York goes back from 02:00 EDT to 01:00 EST on 2027-11-07: 01:10 EST (06:10 UTC) is
    # 20 minutes before the second 01:30, not a day and 20 minutes.
    new_york = ZoneInfo("America/New_York")
    at = datetime(2027, 11, 7, 6, 10, tzinfo=UTC).timestamp()
    second = datetime(2027, 11, 7, 6, 30, tzinfo=UTC).timestamp()
    assert next_local_time(at, new_york, 90) == second
    assert quiet_until(QuietHours(22 * 60, 90), "email", new_york, at) == second
    # Before the first 01:30 it is the first one; in a gap, the moment just after it.
    early = datetime(2027, 11, 7, 5, 10, tzinfo=UTC).timestamp()  # 01:10 EDT
    assert next_local_time(early, new_york, 90) == second - 3600
    spring = datetime(2027, 3, 14, 6, 50, tzinfo=UTC).timestamp()  # 01:50 EST, gap at 02:00
    assert next_local_time(spring, new_york, 150) == spring + 40 * 60  # 03:30 EDT


@settings(max_examples=300, deadline=None)
@given(
    sends=st.lists(st.floats(min_value=0, max_value=20 * DAY), max_size=12),
    at=st.floats(min_value=0, max_value=20 * DAY),
    most=st.integers(min_value=1, max_value=4),
    per_days=st.integers(min_value=1, max_value=7),
    start=st.integers(min_value=0, max_value=23 * 60),
    length=st.integers(min_value=0, max_value=12 * 60),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kolkata", "Nope/Zone"]),
)
def test_a_send_is_never_dropped_and_a_deferral_lands_on_an_allowed_moment(
    sends: list[float], at: float, most: int, per_days: int, start: int, length: int, tz: str
) -> None:
    base = T0
    cap = Cap(most, per_days * DAY)
    quiet = QuietHours(start, (start + length) % (24 * 60))
    config = PolicyConfig(caps=(cap,), quiet_hours=quiet)
    history = tuple(SentRecord(base + s, "email") for s in sorted(sends) if s <= at)
    recipient = Recipient({**EMAIL, "timezone": tz}, sent=history)
    now = base + at
    verdict = decide_send(SendRequest(("email",)), recipient, config, now)
    assert not isinstance(verdict, Suppress)  # an eligible channel is never dropped
    if isinstance(verdict, Defer):
        assert verdict.until > now
        # At the deferral's end the cap has room and it is not quiet: the send goes.
        again = decide_send(SendRequest(("email",)), recipient, config, verdict.until)
        if not isinstance(again, Send):
            assert isinstance(again, Defer) and again.until > verdict.until
    else:
        zone = ZoneInfo(tz) if tz != "Nope/Zone" else ZoneInfo("UTC")
        assert quiet_until(quiet, "email", zone, now) is None
        window = [s for s in history if now - cap.per < s.at <= now]
        assert len(window) < cap.max


@pytest.mark.parametrize(
    ("name", "stops_transactional"),
    [
        ("email_bounced", True),
        ("email_complained", True),
        ("bounced", True),
        ("complained", True),
        ("unsubscribed", False),
        ("email_unsubscribed", False),
    ],
)
@pytest.mark.parametrize("as_tag", [False, True])
def test_every_suppression_trait_and_tag_stops_an_email(
    name: str, stops_transactional: bool, as_tag: bool
) -> None:
    # Each flag, set as a true trait (in any of the spellings `_truthy` takes) or as a tag.
    config = PolicyConfig()
    traits = {**EMAIL, "tags": ["VIP", name.upper()]} if as_tag else {**EMAIL, name: "Yes"}
    marketing = decide_send(SendRequest(("email",)), Recipient(traits), config, T0)
    assert isinstance(marketing, Suppress) and name in marketing.reason
    transactional = decide_send(SendRequest(("email",), True), Recipient(traits), config, T0)
    assert isinstance(transactional, Suppress if stops_transactional else Send)
    # Another channel's flag, or a false one, does not.
    clear = {**EMAIL, "sms_unsubscribed": True, name: False, "tags": ["vip"]}
    assert isinstance(decide_send(SendRequest(("email",)), Recipient(clear), config, T0), Send)


def test_a_capped_send_waits_for_the_first_channel_free_outside_its_quiet_hours() -> None:
    """Email is capped until 15:00 and SMS until 13:00, inside SMS-only quiet hours until
    22:00: the send waited for the channel freed first, SMS, and its quiet hours (22:00),
    though email could carry it at 15:00; so it did with SMS quiet and not capped at all."""
    hour = 3600.0
    sent = (SentRecord(T0 - DAY + 3 * hour, "email"), SentRecord(T0 - DAY + hour, "sms"))
    config = PolicyConfig(
        caps=(Cap(1, DAY, ("email",)), Cap(1, DAY, ("sms",))),
        quiet_hours=QuietHours(12 * 60, 22 * 60, ("sms",)),
    )
    recipient = Recipient({**EMAIL, "phone": "+1415"}, sent=sent)
    verdict = decide_send(SendRequest(("email", "sms")), recipient, config, T0)
    assert isinstance(verdict, Defer)
    assert (verdict.until, verdict.channel) == (T0 + 3 * hour, "email")
    assert decide_send(SendRequest(("email", "sms")), recipient, config, verdict.until) == Send(
        "email"
    )
    # Asked on SMS first, the send would be held by SMS's quiet hours at 15:00: 22:00 it is.
    verdict = decide_send(SendRequest(("sms", "email")), recipient, config, T0)
    assert isinstance(verdict, Defer) and verdict.until == T0 + 10 * hour
    # SMS not capped but quiet: email, passed over for its cap, has room first.
    recipient = Recipient({**EMAIL, "phone": "+1415"}, sent=sent[:1])
    verdict = decide_send(SendRequest(("email", "sms")), recipient, config, T0)
    assert isinstance(verdict, Defer)
    assert (verdict.until, verdict.channel) == (T0 + 3 * hour, "email")


@settings(max_examples=300, deadline=None)
@given(
    at=st.floats(min_value=2.0**31, max_value=2.0**31 + 30 * DAY),
    per=st.sampled_from([3600.0, DAY, 7 * DAY, 30 * DAY]),
)
def test_a_cap_deferral_is_strictly_later_than_the_moment_it_was_decided_at(
    at: float, per: float
) -> None:
    """The send just inside the window: its end, `sent + per`, crossed 2**31 (January 2038)
    and rounded down to `at` itself; a timer woken at `at` deferred to `at`
    fired again under the same event id, was dropped as a duplicate, and the send was lost."""
    sent = math.nextafter(at - per, math.inf)
    config = PolicyConfig(caps=(Cap(1, per),))
    recipient = Recipient(EMAIL, sent=(SentRecord(sent, "email"),))
    verdict = decide_send(SendRequest(("email",)), recipient, config, at)
    assert isinstance(verdict, Defer) and verdict.until > at
    assert decide_send(SendRequest(("email",)), recipient, config, verdict.until) == Send("email")
