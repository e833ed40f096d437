"""The provider rate limit: a pure token bucket that reserves future tokens, and the limiter
that remembers which message holds which slot."""

from __future__ import annotations

import pytest

from leadloop.channels.ratelimit import Limiter, TokenBucket, bucket_for


def test_a_full_bucket_gives_its_burst_then_spaces_sends_by_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0)
    assert bucket.take(100.0) == 100.0
    assert bucket.take(100.0) == 100.0
    # Empty: each further send reserves the next token, half a second apart.
    assert bucket.take(100.0) == pytest.approx(100.5)
    assert bucket.take(100.0) == pytest.approx(101.0)
    assert bucket.available(100.0) == pytest.approx(-2.0)
    # Time pays the debt back, and refills up to the burst only.
    assert bucket.available(101.0) == pytest.approx(0.0)
    assert bucket.available(1000.0) == pytest.approx(2.0)


def test_one_message_a_second_for_a_long_code() -> None:
    bucket = bucket_for(1.0)
    assert bucket is not None
    assert [bucket.take(10.0) for _ in range(4)] == [10.0, 11.0, 12.0, 13.0]
    # A send arriving after the reserved ones queues behind them.
    assert bucket.take(10.5) == pytest.approx(14.0)


def test_several_tokens_at_once_and_no_limit() -> None:
    bucket = TokenBucket(rate=10.0, burst=10.0)
    assert bucket.take(0.0, 10) == 0.0
    assert bucket.take(0.0, 2) == pytest.approx(0.2)
    assert bucket_for(0) is None
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_time_going_backwards_does_not_mint_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.take(50.0) == 50.0
    assert bucket.take(40.0) == pytest.approx(51.0)


def test_the_limiter_keeps_each_messages_slot() -> None:
    limiter = Limiter()
    key = ("ws", "sms", "+15005550006")
    assert limiter.acquire(key, 1.0, "m1", 0.0) is None
    assert limiter.acquire(key, 1.0, "m2", 0.0) == pytest.approx(1.0)
    assert limiter.acquire(key, 1.0, "m3", 0.0) == pytest.approx(2.0)
    # m2 comes back early: same slot, no new token taken.
    assert limiter.acquire(key, 1.0, "m2", 0.5) == pytest.approx(1.0)
    # At its slot m2 sends without taking a token (m3's slot is unchanged) ...
    assert limiter.acquire(key, 1.0, "m2", 1.0) is None
    assert limiter.acquire(key, 1.0, "m3", 2.0) is None
    # ... and a new message queues after the reserved ones.
    assert limiter.acquire(key, 1.0, "m4", 2.0) == pytest.approx(3.0)
    # Other senders and workspaces have their own buckets; rate 0 is no limit.
    assert limiter.acquire(("ws", "sms", "+15005550007"), 1.0, "m5", 2.0) is None
    assert limiter.acquire(("other", "sms", "+15005550006"), 1.0, "m6", 2.0) is None
    assert limiter.acquire(key, 0.0, "m7", 2.0) is None
