"""`classify_response`: one test per row of the retry matrix (research/capi.md §6.1, §1.5, §3)."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.conversions.decide import (
    Bisect,
    Delivered,
    Reject,
    Retry,
    classify_response,
    next_attempt,
)
from leadloop.outbox.retry_after import MAX_RETRY_AFTER, retry_after_header


def graph_error(code: int, subcode: int | None = None, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": "x", "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    error.update(extra)
    return {"error": error}


# --- Meta --------------------------------------------------------------------------------------


def test_meta_success() -> None:
    body = b'{"events_received": 3, "messages": [], "fbtrace_id": "A"}'
    outcome = classify_response("meta", 200, {}, body, batch_size=3)
    assert outcome == Delivered(note="events_received=3")


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, 1), (503, 2), (400, 4), (400, 17), (400, 341), (400, 368), (400, 80003), (502, None)],
)
def test_meta_transient_and_throttling_codes_retry(status: int, code: int | None) -> None:
    body = graph_error(code) if code is not None else b"<html>bad gateway</html>"
    assert isinstance(classify_response("meta", status, {}, body), Retry)


def test_meta_429_honours_retry_after() -> None:
    outcome = classify_response("meta", 429, {"Retry-After": "30"}, graph_error(4))
    assert isinstance(outcome, Retry) and outcome.retry_after == 30.0


def test_meta_is_transient_flag_retries() -> None:
    assert isinstance(
        classify_response("meta", 400, {}, graph_error(999, is_transient=True)), Retry
    )


@pytest.mark.parametrize(("code", "subcode"), [(190, 460), (3, None), (10, None), (200, None)])
def test_meta_auth_and_permission_errors_are_permanent(code: int, subcode: int | None) -> None:
    outcome = classify_response("meta", 400, {}, graph_error(code, subcode), batch_size=50)
    assert isinstance(outcome, Reject)


def test_meta_wrong_pixel_is_permanent_not_bisected() -> None:
    outcome = classify_response("meta", 400, {}, graph_error(100, 33), batch_size=50)
    assert isinstance(outcome, Reject)


def test_meta_parameter_error_bisects_a_batch_and_rejects_a_single_event() -> None:
    body = graph_error(100, 2804003, error_user_msg="Event too old. Event index: 7")
    outcome = classify_response("meta", 400, {}, body, batch_size=20)
    assert isinstance(outcome, Bisect) and outcome.bad_index == 7
    assert isinstance(classify_response("meta", 400, {}, body, batch_size=1), Reject)


def test_meta_unknown_4xx_is_treated_as_a_data_error() -> None:
    assert isinstance(classify_response("meta", 400, {}, b"", batch_size=4), Bisect)


# --- Google Data Manager -----------------------------------------------------------------------


def test_google_success() -> None:
    outcome = classify_response("google", 200, {}, {"requestId": "r-1"})
    assert outcome == Delivered(note="requestId=r-1")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_google_429_and_5xx_retry(status: int) -> None:
    body = {"error": {"code": status, "status": "UNAVAILABLE", "message": "later"}}
    outcome = classify_response("google", status, {"retry-after": "5"}, body)
    assert isinstance(outcome, Retry) and outcome.retry_after == 5.0


def test_google_invalid_argument_fast_fails_the_batch() -> None:
    body = {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": "Request contains an invalid argument.",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "events[12].eventTimestamp"}],
                }
            ],
        }
    }
    outcome = classify_response("google", 400, {}, body, batch_size=100)
    assert isinstance(outcome, Bisect) and outcome.bad_index == 12
    assert isinstance(classify_response("google", 400, {}, body), Reject)


def test_google_invalid_destination_rejects_the_batch_without_splitting_it() -> None:
    """A wrong setting of the request (here its conversion action) fails every part alike:
    bisecting a batch of 2,000 sent about 4,000 requests before all were dead letters."""
    violation = {"field": "destinations[0].productDestinationId", "description": "not found"}
    detail = {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
    body = {"error": {"code": 400, "status": "INVALID_ARGUMENT", "details": [detail]}}
    outcome = classify_response("google", 400, {}, body, batch_size=2000)
    assert isinstance(outcome, Reject)
    assert "destinations[0].productDestinationId" in outcome.reason


@pytest.mark.parametrize(("status", "grpc"), [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED")])
def test_google_auth_errors_are_permanent(status: int, grpc: str) -> None:
    body = {"error": {"code": status, "status": grpc}}
    assert isinstance(classify_response("google", status, {}, body, batch_size=9), Reject)


# --- TikTok ------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 20001])
def test_tiktok_ok_codes(code: int) -> None:
    assert isinstance(
        classify_response("tiktok", 200, {}, {"code": code, "message": "OK"}), Delivered
    )


@pytest.mark.parametrize("code", [40100, 40700])
def test_tiktok_rate_limit_arrives_as_http_200_and_retries(code: int) -> None:
    assert isinstance(classify_response("tiktok", 200, {}, {"code": code}), Retry)


@pytest.mark.parametrize("code", [40001, 40002])
def test_tiktok_auth_codes_are_permanent(code: int) -> None:
    assert isinstance(classify_response("tiktok", 200, {}, {"code": code}, batch_size=5), Reject)


def test_tiktok_other_codes_fail_the_batch() -> None:
    body = {"code": 40000, "message": "invalid field data[3].event_time"}
    outcome = classify_response("tiktok", 200, {}, body, batch_size=10)
    assert isinstance(outcome, Bisect) and outcome.bad_index == 3
    assert isinstance(classify_response("tiktok", 200, {}, body), Reject)


def test_tiktok_http_errors() -> None:
    assert isinstance(classify_response("tiktok", 503, {}, b""), Retry)
    assert isinstance(classify_response("tiktok", 200, {}, b"not json"), Retry)
    assert isinstance(classify_response("tiktok", 404, {}, b""), Reject)


# --- Retry-After and backoff -------------------------------------------------------------------


def test_retry_after_http_date() -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert retry_after_header(headers, now=1445412470.0) == 10.0
    assert retry_after_header(headers) is None  # a date means nothing without `now`
    assert retry_after_header({"Retry-After": "soon"}, now=0.0) is None


@pytest.mark.parametrize(
    ("value", "expected"), [("120, 120", 120.0), ("٣", None), ("²", None), ("+5", None)]
)
def test_retry_after_is_read_as_the_outbox_reads_it(value: str, expected: float | None) -> None:
    # "²" raised ValueError out of the sender; "٣" was 3 s; a repeated field was ignored.
    outcome = classify_response("meta", 429, {"Retry-After": value}, graph_error(4))
    assert isinstance(outcome, Retry) and outcome.retry_after == expected


def test_an_absurd_retry_after_is_capped() -> None:
    # It parked the row for 31 years (or for ever: 400 digits were `inf`).
    outcome = classify_response("google", 503, {"Retry-After": "9" * 400}, {})
    assert isinstance(outcome, Retry) and outcome.retry_after is not None
    assert next_attempt(1, 100.0, outcome.retry_after, key="k") == 100.0 + MAX_RETRY_AFTER


def test_backoff_grows_is_capped_and_gives_up() -> None:
    delays = [next_attempt(n, 1000.0, key="row-1", max_attempts=30) for n in range(1, 25)]
    assert all(d is not None for d in delays)
    waits = [d - 1000.0 for d in delays if d is not None]
    for attempts, wait in enumerate(waits, start=1):
        ceiling = min(3600.0, 2.0 * 2 ** (attempts - 1))
        assert ceiling / 2 <= wait <= ceiling
    assert next_attempt(12, 0.0, key="row-1") is None


def test_backoff_jitter_is_deterministic_per_key() -> None:
    assert next_attempt(5, 0.0, key="a") == next_attempt(5, 0.0, key="a")
    spread = {next_attempt(5, 0.0, key=f"row-{i}") for i in range(20)}
    assert len(spread) > 10


def test_backoff_honours_retry_after_as_a_floor() -> None:
    assert next_attempt(1, 100.0, retry_after=120.0, key="k") == 220.0
    assert next_attempt(1, 100.0, retry_after=0.1, key="k") == next_attempt(1, 100.0, key="k")
    with pytest.raises(ValueError):
        next_attempt(0, 0.0)


def test_package_exports_are_complete() -> None:
    import leadloop.conversions as package

    assert all(hasattr(package, name) for name in package.__all__)
