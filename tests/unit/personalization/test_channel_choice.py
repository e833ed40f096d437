"""Channel preference: the channel a profile answers on comes first; no history keeps the
playbook's order; a channel tried and ignored falls behind an untried one."""

from __future__ import annotations

from leadloop.personalization.channel_choice import engagement_rate, preferred_order

LISTED = ("email", "whatsapp", "sms")


def test_no_history_keeps_the_listed_order() -> None:
    assert preferred_order(LISTED, {}) == LISTED


def test_the_channel_answered_on_comes_first() -> None:
    history = {"email": (10, 1), "whatsapp": (4, 4)}
    assert preferred_order(LISTED, history) == ("whatsapp", "sms", "email")


def test_a_channel_ignored_falls_behind_an_untried_one_and_one_answered_keeps_its_place() -> None:
    assert preferred_order(LISTED, {"email": (1, 0)}) == ("whatsapp", "sms", "email")
    assert preferred_order(LISTED, {"email": (3, 2)}) == LISTED
    assert engagement_rate(0, 0) == 0.5 and engagement_rate(2, 5) == 0.75  # engaged ≤ sent
