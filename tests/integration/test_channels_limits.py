"""Sending rules around the providers, through a running engine and the local fakes: the
Instagram 24-hour messaging window (and the HUMAN_AGENT tag), provider rate limits (a token
bucket per sender, rows held as `pending` until their token frees), and the sends the journeys'
policy deferred or suppressed listed with the channel records."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from leadloop.testing import eventually
from leadloop.testing_fakes.messaging import FakeMessagingServer
from tests.integration.test_channels_providers import (
    Harness,
    identify,
    instagram_inbound,
    playbook,
    start_engine,
    stop,
)

DAY = 24 * 3600.0


@contextmanager
def harness(tmp_path: Path, edit: Any = None) -> Iterator[Harness]:
    with FakeMessagingServer() as fake:
        text = playbook(fake.base_url)
        if edit is not None:
            text = edit(text)
        engine, client, write_key, token = start_engine(tmp_path, text)
        try:
            with client:
                profile = identify(
                    engine,
                    client,
                    write_key,
                    {"first_name": "Ada", "phone": "+44 20 7946 0958", "instagram_psid": "IGSID-1"},
                )
                yield Harness(engine, client, fake, token, profile)
        finally:
            stop(engine)


def with_tag(text: str) -> str:
    return text.replace(
        "    token: ig-token\n", "    token: ig-token\n    message_tag: HUMAN_AGENT\n"
    )


# --- the Instagram messaging window ---------------------------------------------------------------


def test_instagram_outside_the_window_is_refused_with_the_reason(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        h.queue("ig-never", "instagram", template="dm")
        status, attempts, error = h.settled("ig-never")
        assert (status, attempts) == ("dead", 1)
        assert "outside the 24-hour Instagram messaging window" in (error or "")
        record = h.record("ig-never")
        assert record["status"] == "failed"
        assert "the person has never messaged this account" in record["reason"]
        assert "message_tag: HUMAN_AGENT" in record["reason"]

        instagram_inbound(h, ago=30 * 3600)  # the window closed six hours ago
        h.queue("ig-stale", "instagram", template="dm")
        assert h.settled("ig-stale")[0] == "dead"
        assert "last message was 30.0 hours ago" in h.record("ig-stale")["reason"]
        assert h.fake.instagram.requests == []  # refused before any request

        instagram_inbound(h)  # a new message opens it again
        h.queue("ig-open", "instagram", template="dm")
        assert h.settled("ig-open")[0] == "delivered"
        sent = h.fake.instagram.accepted[0]
        assert sent["message"] == {"text": "Hey Ada"} and "tag" not in sent


def test_instagram_human_agent_tag_reaches_back_seven_days(tmp_path: Path) -> None:
    with harness(tmp_path, with_tag) as h:
        instagram_inbound(h, ago=3 * DAY)
        h.queue("ig-tagged", "instagram", template="dm")
        assert h.settled("ig-tagged")[0] == "delivered"
        sent = h.fake.instagram.accepted[0]
        assert (sent["messaging_type"], sent["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
        assert h.record("ig-tagged")["status"] == "sent"

        h.engine.manual_clock.advance(5 * DAY)  # type: ignore[union-attr]
        h.queue("ig-late", "instagram", template="dm")
        assert h.settled("ig-late")[0] == "dead"
        assert "7-day window of the HUMAN_AGENT message tag" in h.record("ig-late")["reason"]
        assert len(h.fake.instagram.requests) == 1


# --- provider rate limits ---------------------------------------------------------------------------


def next_attempt_at(h: Harness, message_id: str) -> float:
    rows = h.engine.read_sync(
        lambda c: c.execute(
            "SELECT next_attempt_at FROM outbox WHERE idempotency_key = ?", (message_id,)
        )
    )
    return float(rows[0][0])


def test_twilio_long_code_sends_one_message_a_second(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        assert h.engine.manual_clock is not None
        start = h.engine.clock.now()
        h.queue_together([f"sms-{n}" for n in range(3)], "sms", template="nudge")
        assert h.settled("sms-0")[0] == "delivered"
        # A wait for a token is not an attempt: the held rows keep their whole budget.
        eventually(
            lambda: (
                h.outbox("sms-0")[1] == 1
                and all(h.outbox(f"sms-{n}")[2] for n in (1, 2))
                and all(h.outbox(f"sms-{n}")[1] == 0 for n in (1, 2))
            )
        )
        assert len(h.fake.twilio.accepted) == 1
        waiting = {n: h.outbox(f"sms-{n}") for n in (1, 2)}
        assert all(status == "pending" for status, _, _ in waiting.values())
        assert all(
            "rate limit: sms sender +15005550006" in (e or "") for _, _, e in waiting.values()
        )
        # Each held message got its own slot, a second apart: nothing sleeps, nothing collides.
        assert next_attempt_at(h, "sms-1") == pytest.approx(start + 1.0)
        assert next_attempt_at(h, "sms-2") == pytest.approx(start + 2.0)
        assert h.record("sms-1")["status"] == "queued"

        h.engine.manual_clock.advance(1.0)
        h.engine.dispatcher.wake()
        assert h.settled("sms-1")[:2] == ("delivered", 1)
        assert h.outbox("sms-2")[0] == "pending"
        h.engine.manual_clock.advance(1.0)
        h.engine.dispatcher.wake()
        assert h.settled("sms-2")[:2] == ("delivered", 1)
        assert [f["_id"] for f in h.fake.twilio.accepted] == [
            h.record(f"sms-{n}")["provider_id"] for n in range(3)
        ]
        assert len(h.fake.twilio.requests) == 3  # no 429 was ever provoked


def test_the_rate_limit_is_configurable(tmp_path: Path) -> None:
    def fast(text: str) -> str:
        return text.replace(
            '    from: "+15005550006"\n', '    from: "+15005550006"\n    rate_limit: 0\n'
        )

    with harness(tmp_path, fast) as h:
        for n in range(3):
            h.queue(f"fast-{n}", "sms", template="nudge")
        for n in range(3):
            assert h.settled(f"fast-{n}")[:2] == ("delivered", 1)


# --- the policy's deferred and suppressed sends -----------------------------------------------------


def record_policy(h: Harness, rows: list[tuple[Any, ...]]) -> None:
    """What the journeys stage writes for a send the policy held back (journeys/writes.py)."""

    def insert(c: Any) -> None:
        c.executemany(
            "INSERT INTO sends (workspace_id, message_id, profile_id, instance_id, journey_id, "
            "step, requested_channel, channel, template, transactional, at, outcome, reason, "
            "until) VALUES ('default', ?, ?, 'i1', 'onboarding', ?, ?, ?, ?, 0, ?, ?, ?, ?)",
            [(r[0], h.profile, *r[1:]) for r in rows],
        )

    h.engine.writer.submit(insert).result()


def test_deferred_and_suppressed_sends_are_listed_with_their_reason(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        now = h.engine.clock.now()
        record_policy(
            h,
            [
                ("jm-quiet", "s1", "sms", "sms", "nudge", now - 60, "deferred", "quiet hours", now),
                (
                    "jm-capped",
                    "s2",
                    "sms",
                    "sms",
                    "nudge",
                    now - 30,
                    "deferred",
                    "frequency cap: 1 sms per day",
                    now + DAY,
                ),
                (
                    "jm-unsub",
                    "s3",
                    "email",
                    None,
                    "welcome",
                    now - 10,
                    "suppressed",
                    "unsubscribed from email",
                    None,
                ),
            ],
        )
        # The quiet-hours deferral ends: the journey queues the same message, the sender sends it.
        record_policy(h, [("jm-quiet", "s1", "sms", "sms", "nudge", now, "queued", "", None)])
        h.queue("jm-quiet", "sms", template="nudge", step="s1")
        assert h.settled("jm-quiet")[0] == "delivered"

        listed = {m["message_id"]: m for m in h.messages()}
        assert set(listed) == {"jm-quiet", "jm-capped", "jm-unsub"}
        capped = listed["jm-capped"]
        assert (capped["status"], capped["reason"]) == ("deferred", "frequency cap: 1 sms per day")
        assert capped["until"] == pytest.approx(now + DAY)
        assert (capped["journey"], capped["step"], capped["channel"]) == ("onboarding", "s2", "sms")
        unsub = listed["jm-unsub"]
        assert (unsub["status"], unsub["reason"]) == ("suppressed", "unsubscribed from email")
        assert unsub["channel"] == "email"
        quiet = listed["jm-quiet"]
        assert quiet["status"] == "sent"
        assert [(t["status"], t["reason"]) for t in quiet["history"]][:2] == [
            ("deferred", "quiet hours"),
            ("queued", "queued for sending"),
        ]
        assert quiet["history"][-1]["status"] == "sent"
        # Oldest first, paged by `after`.
        order = [m["message_id"] for m in h.messages()]
        assert order.index("jm-capped") < order.index("jm-unsub")
        r = h.client.get(
            f"/api/v1/profiles/{h.profile}/messages",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {h.token}"},
        )
        page = r.json()
        assert [m["message_id"] for m in page["messages"]] == ["jm-capped"]
        assert page["next_after"] == pytest.approx(now - 30)
