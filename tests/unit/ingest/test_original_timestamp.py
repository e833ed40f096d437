"""`originalTimestamp`: the device time RudderStack's JavaScript and mobile SDKs send instead of
`timestamp`. Without a `timestamp`, the event time is Segment's and rudder-server's
`receivedAt - (sentAt - originalTimestamp)`; it was ignored, and every such event took the time
it was received."""

from __future__ import annotations

import pytest

from leadloop.ingest import parse
from leadloop.ingest.model import Accepted, Rejected

NOW = 1_800_000_000.0


def request(payload: dict, route: str | None = "track") -> list[Accepted] | Rejected:
    return parse.parse_request(payload, route, received_at=NOW)


def accepted(payload: dict, route: str | None = "track") -> list[Accepted]:
    out = request(payload, route)
    assert isinstance(out, list), out
    return out


def rudder_js(**fields: object) -> dict:
    """A track call as rudder-sdk-js sends it: no `timestamp`."""
    return {
        "type": "track",
        "event": "Order Completed",
        "anonymousId": "a1",
        "channel": "web",
        "messageId": "m1",
        **fields,
    }


# `abs`: pytest.approx's default relative tolerance is half an hour at NOW.
def test_a_single_call_is_corrected_by_its_sent_at() -> None:
    # Device clock a year off: the event happened 3 s before it was sent.
    out = accepted(
        rudder_js(originalTimestamp="2020-01-01T00:00:00.000Z", sentAt="2020-01-01T00:00:03.000Z")
    )
    assert out[0].timestamp == pytest.approx(NOW - 3, abs=1e-3)


def test_a_batch_is_corrected_by_the_batch_sent_at() -> None:
    out = accepted(
        {
            "sentAt": "2020-01-01T00:00:10Z",
            "batch": [
                rudder_js(originalTimestamp="2020-01-01T00:00:00Z"),
                rudder_js(originalTimestamp="2020-01-01T00:00:04.5Z", messageId="m2"),
            ],
        },
        None,
    )
    assert [a.timestamp for a in out] == pytest.approx([NOW - 10, NOW - 5.5], abs=1e-3)


def test_a_batch_message_with_its_own_sent_at_uses_it() -> None:
    out = accepted(
        {
            "sentAt": "2020-01-01T00:01:00Z",
            "batch": [
                rudder_js(originalTimestamp="2020-01-01T00:00:00Z", sentAt="2020-01-01T00:00:02Z")
            ],
        },
        None,
    )
    assert out[0].timestamp == pytest.approx(NOW - 2, abs=1e-3)


def test_without_sent_at_the_original_timestamp_is_taken_as_is() -> None:
    # As a `timestamp` without `sentAt` is: nothing to correct it by.
    out = accepted(rudder_js(originalTimestamp="2024-05-01T12:00:00.000+02:00"))
    assert out[0].timestamp == 1714557600.0


def test_a_timestamp_wins_over_the_original_timestamp() -> None:
    out = accepted(
        rudder_js(
            timestamp="2027-01-15T09:00:00Z",
            originalTimestamp="2020-01-01T00:00:00Z",
            sentAt="2027-01-15T09:00:10Z",
        )
    )
    assert out[0].timestamp == pytest.approx(NOW - 10, abs=1e-3)


@pytest.mark.parametrize("value", ["yesterday", 12, ["2020-01-01T00:00:00Z"], ""])
def test_a_bad_original_timestamp_is_refused_as_a_bad_timestamp_is(value: object) -> None:
    for payload, route in (
        (rudder_js(originalTimestamp=value), "track"),
        ({"batch": [rudder_js(originalTimestamp=value)]}, None),
    ):
        out = request(payload, route)
        assert isinstance(out, Rejected), payload
        assert out.code == "invalid_timestamp" and out.status == 400
        assert "originalTimestamp" in out.message


@pytest.mark.parametrize(
    ("original", "sent_at"),
    [
        ("0001-01-01T00:00:00Z", None),
        ("9999-12-31T20:00:00-14:00", None),
        # Each is fine alone; the correction puts the event ~8,000 years from now.
        ("9999-12-30T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("1970-01-01T00:00:00Z", "9999-12-30T00:00:00Z"),
    ],
)
def test_an_original_timestamp_outside_the_years_a_date_holds_is_refused(
    original: str, sent_at: str | None
) -> None:
    out = request(rudder_js(originalTimestamp=original, sentAt=sent_at))
    assert isinstance(out, Rejected)
    assert out.code == "invalid_timestamp" and out.message.startswith("originalTimestamp")


def test_an_original_timestamp_beside_a_timestamp_is_still_checked() -> None:
    # The same message must not be accepted or refused depending on which field is present.
    out = request(rudder_js(timestamp="2027-01-15T09:00:00Z", originalTimestamp="soon"))
    assert isinstance(out, Rejected) and out.code == "invalid_timestamp"
