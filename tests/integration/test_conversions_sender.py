"""`ConversionSender.send_batch` against the local platform fakes, without a database:
batch splitting, bisection, auth per platform, dead letters and skips."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from leadloop.clock import ManualClock
from leadloop.conversions.config import DestinationConfig
from leadloop.conversions.identifiers import hash_for_platform
from leadloop.conversions.model import (
    Conversion,
    Destination,
    GoogleAdsDestination,
    GoogleDestination,
    MetaDestination,
    TikTokDestination,
    UserIdentifiers,
    platform_of,
)
from leadloop.conversions.payloads import build_event
from leadloop.conversions.sender import ConversionSender
from leadloop.outbox.service import Claimed
from leadloop.testing_fakes.ads import FakeAdsServer

NOW = 1_800_000_000.0
USER = UserIdentifiers(email="Jo@Example.com", phone="+44 20 7946 0958", first_name="Jo")


@pytest.fixture
def fake() -> Iterator[FakeAdsServer]:
    with FakeAdsServer(clock=ManualClock(NOW)) as server:
        yield server


def destinations(base: str) -> dict[str, DestinationConfig]:
    targets: list[tuple[str, Destination, str]] = [
        ("meta", MetaDestination(pixel_id="1", base_url=base), "meta-token"),
        (
            "google",
            GoogleDestination(operating_account_id="1", conversion_action_id="2", base_url=base),
            "google-token",
        ),
        ("tiktok", TikTokDestination(pixel_code="P", base_url=base), "tiktok-token"),
    ]
    return {
        name: DestinationConfig(name, platform_of(target), target, token)
        for name, target, token in targets
    }


_EVENT_TARGETS: dict[str, Destination] = {
    **{
        name: config.destination
        for name, config in destinations("http://unused").items()
        if config.destination is not None
    },
    "google_ads": GoogleAdsDestination(customer_id="1234567890", conversion_action_id="555"),
}
"""What the stage builds events for (a destination's URL and auth never shape an event)."""


def rows(
    destination: str,
    platform: Any,
    count: int,
    start: int = 0,
    form: str = "event",
    event_time: float = NOW - 60,
) -> list[Claimed]:
    """Rows as `ConversionStage` queues them: the event in its platform's form (`form="event"`),
    or, as rows queued before that form existed, the hashed `Conversion` (`form="conversion"`)."""
    out = []
    for n in range(start, start + count):
        conversion = Conversion(
            event_name="Purchase",
            event_time=event_time,
            event_id=f"order-{n}-purchase",
            order_id=str(n),
            user=hash_for_platform(USER, platform, None, True),
            ad_user_data=True,
        )
        if form == "conversion":
            payload = msgspec.json.encode({"conversion": conversion, "mapping": "m"})
        else:
            target = _EVENT_TARGETS.get(destination, MetaDestination(pixel_id="1"))
            payload = msgspec.json.encode(
                {
                    "mapping": "m",
                    "platform": platform,
                    "event_time": conversion.event_time,
                    "action_source": conversion.action_source,
                    "event": build_event(conversion, target),
                }
            )
        out.append(
            Claimed(
                n, "default", "conversion", destination, f"{destination}:{n}", payload, 0, "p", NOW
            )
        )
    return out


def test_rows_queued_as_conversions_are_still_sent(fake: FakeAdsServer) -> None:
    """An outbox from before events were stored in their platform's form: the sender builds
    them, and the platforms get the same requests as from rows in the new form."""
    sender = sender_for(fake)
    old = rows("meta", "meta", 3, form="conversion") + rows("tiktok", "tiktok", 2, 10, "conversion")
    new = rows("meta", "meta", 3, 20) + rows("tiktok", "tiktok", 2, 30)
    outcomes = sender.send_batch(old + new, NOW)
    assert [o.status for o in outcomes] == ["delivered"] * 10
    assert len(fake.meta.requests) == len(fake.tiktok.requests) == 1
    sent = [e for r in fake.meta.requests + fake.tiktok.requests for e in r.body["data"]]
    by_id = {e["event_id"]: e for e in sent}
    for n, m in ((0, 20), (1, 21), (10, 30)):
        before, after = by_id[f"order-{n}-purchase"], by_id[f"order-{m}-purchase"]
        for event in (before, after):
            event.pop("event_id")
            event.get("properties", event.get("custom_data", {})).pop("order_id")
        assert before == after
    sender.close()


def test_an_event_built_for_another_platform_is_a_dead_letter(fake: FakeAdsServer) -> None:
    """The playbook turned destination `meta` into a TikTok one while rows built for Meta
    waited: they are not sent in the wrong shape."""
    config = destinations(fake.base_url)
    moved = DestinationConfig("meta", "tiktok", config["tiktok"].destination, "tiktok-token")
    sender = ConversionSender(lambda ws, name: moved, parallel=1)
    outcomes = sender.send_batch(rows("meta", "meta", 2), NOW)
    assert [o.status for o in outcomes] == ["dead", "dead"]
    assert "is a tiktok destination now; the event was built for meta" in str(outcomes[0].error)
    assert fake.tiktok.requests == []
    sender.close()


def test_too_old_stored_events_are_skipped_with_the_platform_rule(fake: FakeAdsServer) -> None:
    sender = sender_for(fake)
    items = rows("meta", "meta", 1) + rows("google", "google", 1, 5)
    eight_days = NOW + 8 * 86_400
    outcomes = sender.send_batch(items, eight_days)
    assert outcomes[0].status == "skipped" and "older than 7 days" in str(outcomes[0].error)
    assert outcomes[1].status == "delivered"  # Google's default click-through window is longer
    assert fake.meta.requests == []
    sender.close()


def test_a_meta_event_dated_ahead_waits_and_far_ahead_is_skipped(fake: FakeAdsServer) -> None:
    """A row claimed while its event is over a minute ahead (queued before such rows were held,
    or the clock went back) was skipped for good: it waits until its time, without spending an
    attempt, and does not go into Meta's request. TikTok knows no such rule."""
    sender = sender_for(fake)
    items = rows("meta", "meta", 1) + rows("meta", "meta", 1, 1, "conversion")
    items += rows("tiktok", "tiktok", 1, 5)
    due = NOW - 60  # the rows' event time
    outcomes = sender.send_batch(items, due - 3600)
    for held in outcomes[:2]:
        assert (held.status, held.next_attempt_at, held.attempted) == ("pending", due, False)
        assert "in the future" in str(held.error)
    assert outcomes[2].status == "delivered"
    assert fake.meta.requests == []
    outcomes = sender.send_batch(rows("meta", "meta", 1, 10), due - 8 * 86_400)
    assert outcomes[0].status == "skipped"
    assert outcomes[0].error == "meta: event_time is more than 7 days in the future"
    assert sender.send_batch(items[:2], due)[0].status == "delivered"
    sender.close()


def sender_for(fake: FakeAdsServer, parallel: int = 1) -> ConversionSender:
    """One request at a time by default: the tests below check request order and plan failures
    for "the next request"; `test_requests_in_parallel` covers the concurrent default."""
    config = destinations(fake.base_url)
    return ConversionSender(lambda ws, name: config.get(name), parallel=parallel)


def test_batches_are_split_to_platform_limits(fake: FakeAdsServer) -> None:
    sender = sender_for(fake)
    items = rows("meta", "meta", 1500) + rows("google", "google", 2100, 5000)
    outcomes = sender.send_batch(items, NOW)
    assert {o.status for o in outcomes} == {"delivered"}
    assert [len(r.body["data"]) for r in fake.meta.requests] == [1000, 500]
    assert [len(r.body["events"]) for r in fake.google.requests] == [2000, 100]
    assert len(fake.meta.accepted) == 1500 and len(fake.google.accepted) == 2100
    body = json.dumps([r.body for r in fake.meta.requests + fake.google.requests])
    assert "Jo@Example.com".lower() not in body and "7946" not in body
    sender.close()


def test_requests_in_parallel(fake: FakeAdsServer) -> None:
    sender = sender_for(fake, parallel=4)
    items = (
        rows("meta", "meta", 2500)
        + rows("google", "google", 2100, 5000)
        + rows("tiktok", "tiktok", 1200, 9000)
    )
    outcomes = sender.send_batch(items, NOW)
    assert [o.status for o in outcomes] == ["delivered"] * len(items)
    assert sorted(len(r.body["data"]) for r in fake.meta.requests) == [500, 1000, 1000]
    assert sorted(len(r.body["events"]) for r in fake.google.requests) == [100, 2000]
    assert sorted(len(r.body["data"]) for r in fake.tiktok.requests) == [200, 1000]
    assert sender.requests == 7
    accepted = [e["event_id"] for e in fake.meta.accepted]
    assert sorted(accepted) == sorted(f"order-{n}-purchase" for n in range(2500))
    assert not fake.meta.duplicates and len(fake.google.accepted) == 2100
    sender.close()


def test_google_fast_fail_is_bisected_without_an_index(fake: FakeAdsServer) -> None:
    sender = sender_for(fake)
    fake.google.plan(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "x"}})
    outcomes = sender.send_batch(rows("google", "google", 4), NOW)
    assert [o.status for o in outcomes] == ["delivered"] * 4
    assert [len(r.body["events"]) for r in fake.google.requests] == [4, 2, 2]
    sender.close()


def test_auth_errors_are_dead_letters_and_missing_destination_too(fake: FakeAdsServer) -> None:
    sender = sender_for(fake)
    fake.tiktok.plan_error_code(40001, "Authentication failed")
    outcomes = sender.send_batch(rows("tiktok", "tiktok", 2) + rows("gone", "meta", 1, 9), NOW)
    assert [o.status for o in outcomes] == ["dead", "dead", "dead"]
    assert "40001" in str(outcomes[0].error)
    assert "not in the applied playbook" in str(outcomes[2].error)
    sender.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"[]",
        b'{"mapping": "m"}',
        b'{"conversion": {"event_name": "Purchase"}}',
        b'{"platform": "meta", "event": {"event_name": "Purchase"}}',  # no event_time
        b'{"platform": "meta", "event_time": "soon", "event": {}}',
    ],
)
def test_an_unreadable_row_is_a_dead_letter_and_the_rest_are_sent(
    fake: FakeAdsServer, raw: bytes
) -> None:
    sender = sender_for(fake)
    good = rows("meta", "meta", 2)
    bad = Claimed(99, "default", "conversion", "meta", "meta:99", raw, 0, None, NOW)
    outcomes = sender.send_batch([good[0], bad, good[1]], NOW)
    assert [o.status for o in outcomes] == ["delivered", "dead", "delivered"]
    assert "unreadable conversion payload" in str(outcomes[1].error)
    assert len(fake.meta.accepted) == 2
    sender.close()


def test_network_error_is_retried_and_budget_exhaustion_dead_letters() -> None:
    config = destinations("http://127.0.0.1:9")  # nothing listens on the discard port
    sender = ConversionSender(lambda ws, name: config.get(name), max_attempts=2, parallel=1)
    first = sender.send_batch(rows("meta", "meta", 1), NOW)
    assert first[0].status == "pending" and first[0].next_attempt_at is not None
    assert "network error" in str(first[0].error)
    tired = [
        Claimed(
            1,
            "default",
            "conversion",
            "meta",
            "meta:1",
            rows("meta", "meta", 1)[0].raw_payload,
            1,
            None,
            NOW,
        )
    ]
    assert sender.send_batch(tired, NOW)[0].status == "dead"
    sender.close()


# --- Google Ads API (partial failure: one outcome per row) -------------------------------------


def google_ads_sender(
    fake: FakeAdsServer, developer_token: str = "developer-token", **changes: Any
) -> ConversionSender:
    target = GoogleAdsDestination(
        customer_id="1234567890",
        conversion_action_id="555",
        base_url=fake.base_url,
        **changes,
    )
    config = DestinationConfig(
        "google_ads", "google_ads", target, "google-ads-token", developer_token=developer_token
    )
    return ConversionSender(lambda ws, name: config if name == "google_ads" else None, parallel=1)


def google_ads_rows(count: int, attempts: int = 0) -> list[Claimed]:
    return [
        Claimed(
            row.id,
            row.workspace_id,
            row.kind,
            row.destination,
            row.idempotency_key,
            row.raw_payload,
            attempts,
            row.profile_id,
            row.created_at,
        )
        for row in rows("google_ads", "google_ads", count)
    ]


def test_google_ads_uploads_with_developer_token_and_no_raw_pii(fake: FakeAdsServer) -> None:
    sender = google_ads_sender(fake, login_customer_id="9998887776")
    outcomes = sender.send_batch(google_ads_rows(3), NOW)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    (request,) = fake.google_ads.requests
    assert request.path == "/v26/customers/1234567890:uploadClickConversions"
    assert request.headers["developer-token"] == "developer-token"
    assert request.headers["authorization"] == "Bearer google-ads-token"
    assert request.headers["login-customer-id"] == "9998887776"
    assert request.body["partialFailure"] is True
    assert [c["orderId"] for c in fake.google_ads.accepted] == ["0", "1", "2"]
    assert "jo@example.com" not in json.dumps(request.body) and "7946" not in json.dumps(
        request.body
    )
    sender.close()


def test_google_ads_batches_are_split_at_2000(fake: FakeAdsServer) -> None:
    sender = google_ads_sender(fake)
    outcomes = sender.send_batch(google_ads_rows(2100), NOW)
    assert {o.status for o in outcomes} == {"delivered"}
    assert [len(r.body["conversions"]) for r in fake.google_ads.requests] == [2000, 100]
    sender.close()


def test_google_ads_partial_failure_records_only_the_failed_rows(fake: FakeAdsServer) -> None:
    sender = google_ads_sender(fake)
    fake.google_ads.plan_row_errors({1: "INVALID_USER_IDENTIFIER", 3: "TOO_RECENT_EVENT"})
    outcomes = sender.send_batch(google_ads_rows(5), NOW)
    assert [o.status for o in outcomes] == [
        "delivered",
        "dead",
        "delivered",
        "pending",
        "delivered",
    ]
    assert "INVALID_USER_IDENTIFIER" in str(outcomes[1].error)
    assert outcomes[3].next_attempt_at is not None and outcomes[3].next_attempt_at >= NOW + 6 * 3600
    assert [c["orderId"] for c in fake.google_ads.accepted] == ["0", "2", "4"]
    assert len(fake.google_ads.requests) == 1  # no bisection: Google said which rows failed

    # The retried row goes alone, later, and is taken; the delivered ones are not sent again.
    retry = [google_ads_rows(5, attempts=1)[3]]
    assert [o.status for o in sender.send_batch(retry, NOW + 6 * 3600)] == ["delivered"]
    assert [c["orderId"] for c in fake.google_ads.accepted] == ["0", "2", "4", "3"]
    sender.close()


def test_google_ads_500_is_retried_and_accepted_exactly_once(fake: FakeAdsServer) -> None:
    sender = google_ads_sender(fake)
    fake.google_ads.plan_server_error(500)
    first = sender.send_batch(google_ads_rows(2), NOW)
    assert [o.status for o in first] == ["pending", "pending"]
    assert "HTTP 500" in str(first[0].error)
    assert fake.google_ads.accepted == []
    second = sender.send_batch(google_ads_rows(2, attempts=1), NOW + 60)
    assert [o.status for o in second] == ["delivered", "delivered"]
    # A re-send after a lost answer: Google refuses the order id again, which is a success.
    third = sender.send_batch(google_ads_rows(2, attempts=1), NOW + 120)
    assert [o.status for o in third] == ["delivered", "delivered"]
    assert [c["orderId"] for c in fake.google_ads.accepted] == ["0", "1"]
    assert len(fake.google_ads.duplicates) == 2
    sender.close()


def test_google_ads_not_allowlisted_is_a_dead_letter_pointing_to_data_manager(
    fake: FakeAdsServer,
) -> None:
    sender = google_ads_sender(fake)
    fake.google_ads.allowlisted = False
    outcomes = sender.send_batch(google_ads_rows(3), NOW)
    assert [o.status for o in outcomes] == ["dead"] * 3
    reason = str(outcomes[0].error)
    assert "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE" in reason
    assert "type: google" in reason and "Data Manager" in reason
    assert len(fake.google_ads.requests) == 1  # permanent: not bisected, not retried
    sender.close()


def test_google_ads_bad_developer_token_is_a_dead_letter(fake: FakeAdsServer) -> None:
    sender = google_ads_sender(fake, developer_token="wrong")
    outcomes = sender.send_batch(google_ads_rows(2), NOW)
    assert [o.status for o in outcomes] == ["dead", "dead"]
    assert "DEVELOPER_TOKEN_INVALID" in str(outcomes[0].error)
    assert "developer token" in str(outcomes[0].error)
    sender.close()


def test_a_retry_after_date_is_read_against_the_wall_clock(fake: FakeAdsServer) -> None:
    """Under a manual clock (here ahead of the wall) a platform's `Retry-After` HTTP-date still
    means the wait it names: read against the engine's time it would be long past."""
    import email.utils
    import time

    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    fake.meta.plan(429, {"error": {"code": 4, "message": "rate limited"}}, {"Retry-After": later})
    sender = sender_for(fake)
    [outcome] = sender.send_batch(rows("meta", "meta", 1), NOW)
    assert outcome.status == "pending"
    assert outcome.next_attempt_at is not None
    assert NOW + 3000 <= outcome.next_attempt_at <= NOW + 3700
    sender.close()


def test_a_repeated_retry_after_is_honoured(fake: FakeAdsServer) -> None:
    # Two header lines reach us joined ("120, 120"), which was unreadable: our own 2 s instead.
    fake.meta.plan(429, {"error": {"code": 4, "message": "x"}}, {"Retry-After": ["120", "120"]})
    sender = sender_for(fake)
    [outcome] = sender.send_batch(rows("meta", "meta", 1), NOW)
    sender.close()
    assert outcome.status == "pending" and outcome.next_attempt_at == NOW + 120


def test_a_retry_waits_from_the_end_of_a_slow_attempt() -> None:
    # Counted from the claim's `now`, the wait of an attempt that took a minute (a timeout)
    # had already passed when it ended, and the platform got the retry at once.
    config = destinations("http://127.0.0.1:9")  # nothing listens on the discard port
    clock = ManualClock(NOW + 60)  # the attempt ends a minute after its claim
    sender = ConversionSender(lambda ws, name: config.get(name), parallel=1, clock=clock)
    outcome = sender.send_batch(rows("meta", "meta", 1), NOW)[0]
    sender.close()
    assert outcome.status == "pending" and outcome.next_attempt_at is not None
    assert outcome.next_attempt_at > NOW + 60


# --- the edge of a platform's window -----------------------------------------------------------

DAY = 86_400.0


def test_an_event_at_the_edge_of_metas_7_days_does_not_fail_the_batch() -> None:
    """An event 30 s inside Meta's 7 days at the claim was 90 s past them when the request
    reached Meta (its clock here a couple of minutes later), and Meta refused the whole
    request: the batch was bisected down to it (extra requests) and it ended as a dead letter.
    It is skipped before sending, with the reason, and the batch goes out once."""
    claim = NOW + 10 * DAY
    with FakeAdsServer(clock=ManualClock(claim + 120)) as fake:
        sender = sender_for(fake)
        fresh = rows("meta", "meta", 3, event_time=claim - 60)
        edge = rows("meta", "meta", 1, 10, event_time=claim - 7 * DAY + 30)
        outcomes = sender.send_batch(fresh[:2] + edge + fresh[2:], claim)
        sender.close()
        assert [o.status for o in outcomes] == ["delivered", "delivered", "skipped", "delivered"]
        assert "7-day" in str(outcomes[2].error) and "margin" in str(outcomes[2].error)
        assert len(fake.meta.requests) == 1


def test_a_retry_that_would_fall_past_the_window_is_a_dead_letter_now() -> None:
    """Throttled (Retry-After three hours) with two hours of Meta's window left: the row was
    scheduled after the window and then skipped as 'older than 7 days', which hid that it
    never got through. It is a dead letter at once, with the platform's error and why."""
    claim = NOW + 10 * DAY
    with FakeAdsServer(clock=ManualClock(claim)) as fake:
        fake.meta.plan(
            429, {"error": {"code": 4, "message": "throttled"}}, {"Retry-After": "10800"}
        )
        sender = sender_for(fake)
        [outcome] = sender.send_batch(
            rows("meta", "meta", 1, event_time=claim - 7 * DAY + 7200), claim
        )
        sender.close()
    assert outcome.status == "dead"
    assert "throttled" in str(outcome.error) and "7-day" in str(outcome.error)
    with FakeAdsServer(clock=ManualClock(claim)) as fake:  # a short wait still retries
        fake.meta.plan(429, {"error": {"code": 4, "message": "throttled"}}, {"Retry-After": "60"})
        sender = sender_for(fake)
        [outcome] = sender.send_batch(
            rows("meta", "meta", 1, event_time=claim - 7 * DAY + 7200), claim
        )
        sender.close()
    assert outcome.status == "pending"


def test_a_row_that_expired_while_retried_is_a_dead_letter(fake: FakeAdsServer) -> None:
    """Past the window at its claim after failed attempts (the worker was down, or an old
    schedule): delivery failed, so it is a dead letter, not a skip as for an event that was
    already too old when it was queued."""
    sender = sender_for(fake)
    claim = NOW + 8 * DAY
    [tried] = rows("meta", "meta", 1)
    tried = msgspec.structs.replace(tried, attempts=3)
    [fresh] = rows("meta", "meta", 1, 1)
    outcomes = sender.send_batch([tried, fresh], claim)
    sender.close()
    assert [o.status for o in outcomes] == ["dead", "skipped"]
    assert "older than 7 days" in str(outcomes[0].error) and "3 attempts" in str(outcomes[0].error)
    assert fake.meta.requests == []
