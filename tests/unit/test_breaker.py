"""When parking stops being rare the processor holds instead (`log.breaker`)."""

from __future__ import annotations

from leadloop.log.breaker import Breaker, Limits


def test_parks_in_a_row_with_one_error_hold_the_next_one() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=3))
    for _ in range(3):
        assert b.verdict("KeyError", parked_in_window=0) is None
        b.parked("KeyError")
    assert b.verdict("KeyError", parked_in_window=0) == (
        "3 events parked in a row failing with KeyError"
    )
    assert b.verdict("ValueError", parked_in_window=0) is None  # another failure: parked


def test_an_event_processed_between_them_ends_the_row() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=2))
    b.parked("KeyError")
    b.processed()
    b.parked("KeyError")
    assert b.verdict("KeyError", parked_in_window=0) is None
    b.parked("ValueError")  # another error starts a row of its own
    assert b.verdict("KeyError", parked_in_window=0) is None
    assert b.in_a_row == 1


def test_too_many_parks_within_the_window_hold() -> None:
    b = Breaker(Limits(window=1000, parks=10, in_a_row=5))
    assert b.verdict("KeyError", parked_in_window=9) is None
    assert b.verdict("KeyError", parked_in_window=10) == (
        "10 events parked within the last 1000 of the log"
    )
