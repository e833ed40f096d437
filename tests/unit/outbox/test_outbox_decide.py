"""The outbox's pure decisions: classification of answers, backoff, dead letters."""

from __future__ import annotations

import calendar

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadloop.outbox.decide import (
    Dead,
    Delivered,
    Retry,
    backoff_delay,
    classify_http,
    next_attempt,
    parse_retry_after,
    record_attempt,
)
from leadloop.outbox.model import OutboxItem, OutboxStatus, RetryPolicy

NOW = 1_714_564_800.0
POLICY = RetryPolicy()
keys = st.text(min_size=1, max_size=40)


def _item(**changes: object) -> OutboxItem:
    item = OutboxItem(
        id="1", kind="webhook", destination="crm", idempotency_key="msg_1", payload=b"{}"
    )
    return msgspec.structs.replace(item, **changes)


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 May 2024 12:02:00 GMT", 120.0),  # IMF-fixdate
        ("Wednesday, 01-May-24 12:02:00 GMT", 120.0),  # RFC 850
        ("Wed May  1 12:02:00 2024", 120.0),  # asctime
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("Wed, 01 Foo 2024 12:02:00 GMT", None),
        ("Wed, 01 May 2024 25:02:00 GMT", None),
        # Year 0 is no date `datetime` can hold: unreadable, not a crash of the sender.
        ("Sat, 01 Jan 0000 00:00:00 GMT", None),
        ("Sat Jan  1 00:00:00 0000", None),
        # Repeated fields arrive joined by the HTTP client (httpx): "120, 120" was unreadable.
        ("120, 120", 120.0),
        ("120,120", 120.0),
        ("60, 120", 120.0),  # each is a floor: the longest honours both
        ("Wed, 01 May 2024 12:02:00 GMT, Wed, 01 May 2024 12:02:00 GMT", 120.0),
        ("Wednesday, 01-May-24 12:02:00 GMT, 30", 120.0),
        ("120, soon", None),
        ("120,", None),
        (",", None),
        # Digits other than ASCII: `float` reads some ("٣" is 3) and raises on others ("²").
        ("٣", None),
        ("²", None),
        ("+5", None),
        ("1_000", None),
        ("Wed, ٠١ May 2024 12:02:00 GMT", None),  # `\d` is any script's digit
        ("Wed May  ١ 12:02:00 2024", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_an_absurd_retry_after_is_a_finite_number_the_policy_caps() -> None:
    seconds = parse_retry_after("9" * 5000, NOW)
    assert seconds is not None and seconds >= POLICY.max_retry_after and seconds < float("inf")
    when = next_attempt(1, NOW, seconds, "k", POLICY)
    assert when == NOW + POLICY.max_retry_after


def test_an_unreadable_retry_after_date_falls_back_to_our_backoff() -> None:
    # It raised ValueError out of the sender: the row was retried every minute, for ever.
    outcome = classify_http(503, {"Retry-After": "Sat, 01 Jan 0000 00:00:00 GMT"}, NOW)
    assert outcome == Retry("HTTP 503", None)


def test_rfc850_two_digit_years_use_the_fifty_year_rule() -> None:
    now = float(calendar.timegm((2024, 5, 1, 0, 0, 0, 0, 0, 0)))
    far = parse_retry_after("Thursday, 01-May-80 00:00:00 GMT", now)
    assert far == 0.0  # 2080 is over 50 years ahead, so 1980: in the past


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status: int) -> None:
    assert classify_http(status, {}, NOW) == Delivered()


def test_410_is_dead_and_disables_the_endpoint() -> None:
    outcome = classify_http(410, {}, NOW)
    assert isinstance(outcome, Dead)
    assert outcome.disable_endpoint


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_3xx_is_a_failure_that_is_retried(status: int) -> None:
    outcome = classify_http(status, {"Location": "https://elsewhere"}, NOW)
    assert isinstance(outcome, Retry)
    assert not outcome.client_error


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504, 599, 600, 0])
def test_throttling_and_server_errors_retry_on_the_full_budget(status: int) -> None:
    outcome = classify_http(status, {"Retry-After": "30"}, NOW)
    assert outcome == Retry(f"HTTP {status}", 30.0)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_retry_on_a_short_budget(status: int) -> None:
    outcome = classify_http(status, {}, NOW)
    assert isinstance(outcome, Retry)
    assert outcome.client_error


def test_retry_after_header_is_found_case_insensitively() -> None:
    outcome = classify_http(503, {"retry-AFTER": "Wed, 01 May 2024 12:01:00 GMT"}, NOW)
    assert isinstance(outcome, Retry)
    assert outcome.after == 60.0


# --- backoff ------------------------------------------------------------------------------


def test_schedule_spreads_over_days_and_then_gives_up() -> None:
    total = sum(backoff_delay(n, "k", POLICY) for n in range(1, POLICY.max_attempts))
    assert 86_400 < total < 4 * 86_400
    assert next_attempt(POLICY.max_attempts, NOW, None, "k", POLICY) is None
    assert next_attempt(POLICY.max_attempts - 1, NOW, None, "k", POLICY) is not None


def test_jitter_is_deterministic_and_spreads_keys() -> None:
    assert backoff_delay(3, "a", POLICY) == backoff_delay(3, "a", POLICY)
    delays = {backoff_delay(3, f"key{i}", POLICY) for i in range(50)}
    assert len(delays) == 50
    raw = POLICY.base_delay * POLICY.multiplier**2
    assert all(raw * (1 - POLICY.jitter) <= d <= raw for d in delays)


@given(attempts=st.integers(1, 200), now=st.floats(0, 4e9), key=keys)
def test_never_before_now_and_never_past_the_cap(attempts: int, now: float, key: str) -> None:
    when = next_attempt(attempts, now, None, key, RetryPolicy(max_attempts=1_000))
    assert when is not None
    assert now < when <= now + POLICY.max_delay


@given(attempts=st.integers(1, 30), key=keys)
def test_monotone_in_attempts_before_the_cap(attempts: int, key: str) -> None:
    policy = RetryPolicy(max_attempts=100)
    if policy.base_delay * policy.multiplier**attempts > policy.max_delay:
        return  # attempt n+1 reaches the cap, where jitter may go either way
    assert backoff_delay(attempts, key, policy) <= backoff_delay(attempts + 1, key, policy)


@given(attempts=st.integers(1, 11), retry_after=st.floats(0, 1e9), key=keys)
def test_retry_after_is_a_floor_capped_by_policy(
    attempts: int, retry_after: float, key: str
) -> None:
    when = next_attempt(attempts, NOW, retry_after, key, POLICY)
    assert when is not None
    assert when >= NOW + min(retry_after, POLICY.max_retry_after)
    assert when >= NOW + backoff_delay(attempts, key, POLICY)
    assert when <= NOW + max(POLICY.max_delay, POLICY.max_retry_after)


def test_invalid_inputs_are_bugs() -> None:
    with pytest.raises(ValueError):
        next_attempt(0, NOW, None, "k", POLICY)
    with pytest.raises(ValueError):
        RetryPolicy(multiplier=1.5, jitter=0.5)  # would break monotonicity
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# --- recording ----------------------------------------------------------------------------


def test_record_delivered() -> None:
    item = record_attempt(_item(attempts=2, last_error="HTTP 500"), Delivered(), NOW, POLICY)
    assert (item.status, item.attempts, item.next_attempt_at, item.last_error) == (
        OutboxStatus.DELIVERED,
        3,
        None,
        None,
    )


def test_record_retry_then_dead_letter() -> None:
    item = _item()
    for _ in range(POLICY.max_attempts - 1):
        item = record_attempt(item, Retry("HTTP 503"), NOW, POLICY)
        assert item.status is OutboxStatus.PENDING
        assert item.next_attempt_at is not None and item.next_attempt_at > NOW
    item = record_attempt(item, Retry("HTTP 503"), NOW, POLICY)
    assert item.status is OutboxStatus.DEAD
    assert item.attempts == POLICY.max_attempts
    assert item.last_error == f"HTTP 503; gave up after {POLICY.max_attempts} attempts"


def test_client_errors_dead_letter_after_their_short_budget() -> None:
    item = _item()
    outcome = classify_http(400, {}, NOW)
    for _ in range(POLICY.client_error_attempts - 1):
        item = record_attempt(item, outcome, NOW, POLICY)
        assert item.status is OutboxStatus.PENDING
    item = record_attempt(item, outcome, NOW, POLICY)
    assert item.status is OutboxStatus.DEAD


def test_record_gone() -> None:
    item = record_attempt(_item(), classify_http(410, {}, NOW), NOW, POLICY)
    assert item.status is OutboxStatus.DEAD
    assert item.last_error is not None and "410" in item.last_error
