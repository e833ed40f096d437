"""When parking stops being rare the processor holds instead (`log.breaker`); rare is counted
in senders, so that one client repeating a poison payload does not hold everybody's events."""

from __future__ import annotations

from leadloop.log.breaker import Breaker, Limits, Sender, sender, sender_of
from leadloop.log.model import Event


def user(name: str) -> Sender:
    return sender("default", "track", name, None, None, 1)


BOT = user("bot")


def test_parks_in_a_row_from_different_senders_with_one_error_hold_the_next_one() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=3))
    for n in range(3):
        assert b.verdict("KeyError", user(f"u{n}"), window=[]) is None
        b.parked("KeyError", user(f"u{n}"))
    assert b.verdict("KeyError", BOT, window=[]) == (
        "events of 3 senders parked in a row failing with KeyError"
    )
    assert b.verdict("ValueError", BOT, window=[]) is None  # another failure: parked


def test_one_senders_parks_in_a_row_count_once() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=3))
    for _ in range(20):
        assert b.verdict("KeyError", BOT, window=[]) is None
        b.parked("KeyError", BOT)
    assert b.in_a_row == 20 and b.senders == {BOT}
    b.parked("KeyError", user("u1"))
    assert b.verdict("KeyError", user("u2"), window=[]) is None
    b.parked("KeyError", user("u2"))
    assert b.verdict("KeyError", BOT, window=[]) == (
        "events of 3 senders parked in a row failing with KeyError"
    )


def test_an_event_processed_between_them_ends_the_row() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=2))
    b.parked("KeyError", user("u1"))
    b.processed()
    b.parked("KeyError", user("u2"))
    assert b.verdict("KeyError", BOT, window=[]) is None
    b.parked("ValueError", user("u3"))  # another error starts a row of its own
    assert b.verdict("KeyError", BOT, window=[]) is None
    assert b.in_a_row == 1 and b.senders == {user("u3")}


def test_parks_of_too_many_senders_within_the_window_hold() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=5))
    eight = [user(f"u{n}") for n in range(8)]
    assert b.verdict("KeyError", BOT, window=eight * 3 + [BOT] * 50) is None  # nine senders
    assert b.verdict("KeyError", BOT, window=[*eight, BOT, user("u8")]) == (
        "events of 10 senders parked within the last 1000 of the log"
    )


def test_one_sender_parks_up_to_its_cap_within_the_window() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=5, per_sender=30))
    assert b.verdict("KeyError", BOT, window=[BOT] * 29) is None
    held = "30 events of its sender parked within the last 1000 of the log"
    assert b.verdict("KeyError", BOT, window=[BOT] * 30) == held
    assert b.verdict("KeyError", user("u1"), window=[BOT] * 30) is None  # someone else's


def test_a_sender_is_its_user_id_else_its_anonymous_id_within_its_workspace() -> None:
    def event(**ids: str) -> Event:
        return Event(
            seq=7, workspace_id="w", message_id="m", type="track", timestamp=0, received_at=0, **ids
        )

    assert sender_of(event(user_id="u", anonymous_id="a")) == ("w", "user", "u")
    assert sender_of(event(anonymous_id="a")) == ("w", "anonymous", "a")
    assert sender_of(event(anonymous_id="u")) != sender_of(event(user_id="u"))
    assert sender("w", "track", "u", None, None, 1) != sender("x", "track", "u", None, None, 1)
    # The engine's own events: the profile they name; a row naming nobody, or gone from the
    # log, is a sender of its own.
    assert sender("w", "internal", None, None, "p1", 1) == ("w", "profile", "p1")
    assert sender("w", "internal", None, None, None, 1) != sender(
        "w", "internal", None, None, None, 2
    )
    assert sender("w", None, None, None, None, 1) != sender("w", None, None, None, None, 2)
