"""Values one backend or stage cannot hold are refused by `parse`, naming the field; the
look-alikes real clients send are not."""

from __future__ import annotations

import json
import sys

import pytest

from leadloop.ingest import parse
from leadloop.ingest.model import MAX_DEPTH, Accepted, Rejected

NOW = 1_800_000_000.0
BIG = int(sys.float_info.max)


def request(payload: dict, route: str | None = "track") -> list[Accepted] | Rejected:
    return parse.parse_request(payload, route, received_at=NOW)


def rejected(payload: dict, route: str | None = "track") -> Rejected:
    out = request(payload, route)
    assert isinstance(out, Rejected), out
    assert out.status == 400
    return out


def nested(levels: int) -> object:
    """`levels` objects inside each other: `{"a": {"a": ... 1}}`."""
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("payload", "route", "field"),
    [
        ({"userId": "u\x00", "event": "X"}, "track", "userId"),
        ({"anonymousId": "\x00a", "event": "X"}, "track", "anonymousId"),
        ({"userId": "u", "event": "X", "messageId": "m\x00"}, "track", "messageId"),
        ({"userId": "u", "event": "X\x00"}, "track", "event"),
        ({"userId": "u", "name": "Home\x00"}, "page", "name"),
        ({"userId": "u", "event": "X", "properties": {"a": "\x00"}}, "track", "properties.a"),
        ({"userId": "u", "traits": {"email": "a\x00@b.co"}}, "identify", "traits.email"),
        (
            {"userId": "u", "context": {"traits": {"email": "a\x00@b.co"}}},
            "identify",
            "context.traits.email",
        ),
        ({"userId": "u", "groupId": "g\x00"}, "group", "groupId"),
        ({"userId": "u", "previousId": "p\x00"}, "alias", "previousId"),
        (
            {"userId": "u", "event": "X", "properties": {"items": [{"sku": "1"}, {"sku": "\x00"}]}},
            "track",
            "properties.items[1].sku",
        ),
        (
            {"userId": "u", "event": "X", "properties": {"k\x00": 1}},
            "track",
            "properties has a key",
        ),
        ({"userId": "u", "event": "X", "integrations": {"\x00": True}}, "track", "integrations"),
    ],
)
def test_nul_anywhere_is_refused_naming_the_field(payload: dict, route: str, field: str) -> None:
    out = rejected(payload, route)
    assert out.code == "invalid_field"
    assert out.message.startswith(field) and "U+0000" in out.message


def test_nul_in_a_batch_names_the_message_and_rejects_all_of_it() -> None:
    out = rejected(
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "ok"},
                {"type": "identify", "userId": "u", "traits": {"name": "A\x00"}},
            ]
        },
        None,
    )
    assert out.message.startswith("batch[1].traits.name")


def test_nul_in_the_batch_context_is_refused() -> None:
    out = rejected(
        {"context": {"ip": "\x00"}, "batch": [{"type": "track", "userId": "u", "event": "ok"}]},
        None,
    )
    assert out.message.startswith("batch[0].context.ip")


@pytest.mark.parametrize(
    "text", ["\\u0000", "a backslash-u: \\u0000\\u0000", "0" * 400, "-" + "9" * 400]
)
def test_text_that_only_looks_like_a_bad_value_is_accepted(text: str) -> None:
    out = request({"userId": "u", "event": "X", "properties": {"note": text}})
    assert isinstance(out, list)
    assert json.loads(out[0].body)["properties"]["note"] == text


def arrays(levels: int) -> object:
    return json.loads("[" * levels + "]" * levels)


@pytest.mark.parametrize("wrap", [nested, arrays])
def test_nesting_up_to_the_limit_is_accepted(wrap) -> None:  # type: ignore[no-untyped-def]
    # The message is the first level, properties the second, properties.x the third.
    out = request({"userId": "u", "event": "X", "properties": {"x": wrap(MAX_DEPTH - 2)}})
    assert isinstance(out, list)


@pytest.mark.parametrize("wrap", [nested, arrays])
def test_nesting_past_the_limit_is_refused(wrap) -> None:  # type: ignore[no-untyped-def]
    out = rejected({"userId": "u", "event": "X", "properties": {"x": wrap(MAX_DEPTH - 1)}})
    assert out.code == "invalid_field"
    assert out.message.startswith("properties.x") and f"deeper than {MAX_DEPTH}" in out.message


def test_a_long_field_path_is_shortened_in_the_message() -> None:
    deep = nested(MAX_DEPTH)
    assert isinstance(deep, dict)
    out = rejected({"userId": "u", "event": "X", "properties": {"k" * 500: deep}})
    assert len(out.message) < 300


def test_json_nested_past_what_the_decoder_can_recurse_is_a_400() -> None:
    out = parse.decode_json(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert isinstance(out, Rejected) and out.code == "invalid_json"


@pytest.mark.parametrize("body", [b'{"a":"\xed\xa0\x80"}', b'{"a":"x\xff"}', b'{"\xc3":1}'])
def test_invalid_utf8_inside_a_string_is_a_400(body: bytes) -> None:
    out = parse.decode_json(body)
    assert isinstance(out, Rejected) and out.code == "invalid_json" and "UTF-8" in out.message


@pytest.mark.parametrize("escape", ['"\\ud800"', '"x\\udfff"', '"\\ud800\\u0041"'])
def test_a_lone_surrogate_escape_is_a_400(escape: str) -> None:
    out = parse.decode_json(f'{{"a": {escape}}}'.encode())
    assert isinstance(out, Rejected) and out.code == "invalid_json"


@pytest.mark.parametrize("value", [BIG, -BIG, 2**64, 10**300, 0.1, 1e308])
def test_numbers_a_double_holds_are_accepted(value: float) -> None:
    out = request({"userId": "u", "event": "X", "properties": {"n": value}})
    assert isinstance(out, list)


@pytest.mark.parametrize(
    ("payload", "route", "field"),
    [
        ({"userId": "u", "event": "X", "properties": {"n": BIG + 1}}, "track", "properties.n"),
        ({"userId": "u", "traits": {"employees": -(10**400)}}, "identify", "traits.employees"),
        ({"userId": 10**400, "event": "X"}, "track", "userId"),
    ],
)
def test_an_integer_beyond_a_double_is_refused(payload: dict, route: str, field: str) -> None:
    out = rejected(payload, route)
    assert out.code == "invalid_field"
    assert out.message.startswith(field) and "double" in out.message


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-02T00:00:00Z", "1969-07-20T20:17:00Z", "9999-12-30T23:59:59Z", "2024-05-01T12:00Z"],
)
def test_timestamps_within_the_years_datetime_holds_are_accepted(stamp: str) -> None:
    assert isinstance(request({"userId": "u", "event": "X", "timestamp": stamp}), list)


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("9999-12-31T23:59:59Z", None),
        ("9999-12-31T20:00:00-14:00", None),  # in the year 10000 in UTC
        ("0001-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00+14:00", None),
        # Each is fine alone; the skew correction puts the event ~8,000 years from now.
        ("9999-12-30T00:00:00Z", "1970-01-01T00:00:00Z"),
        ("1970-01-01T00:00:00Z", "9999-12-30T00:00:00Z"),
    ],
)
def test_an_event_time_outside_those_years_is_refused(timestamp: str, sent_at: str | None) -> None:
    out = rejected({"userId": "u", "event": "X", "timestamp": timestamp, "sentAt": sent_at})
    assert out.code == "invalid_timestamp" and out.message.startswith("timestamp")


def test_an_empty_property_key_is_accepted() -> None:
    # Stored and shown as sent on both backends; nothing downstream breaks on it.
    out = request({"userId": "u", "event": "X", "properties": {"": 1}})
    assert isinstance(out, list)
