import gzip
import zlib

import msgspec
import pytest

from leadloop.ingest import parse
from leadloop.ingest.model import MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, Accepted, Rejected

NOW = 1_800_000_000.0


def request(payload: dict, route: str | None = "track") -> list[Accepted] | Rejected:
    return parse.parse_request(payload, route, received_at=NOW)


def test_track_with_nulls_is_accepted() -> None:
    out = request(
        {"userId": None, "anonymousId": "a1", "event": "X", "properties": None, "name": None}
    )
    assert isinstance(out, list)
    assert out[0].anonymous_id == "a1" and out[0].user_id is None
    assert out[0].event == "X"


def test_numeric_ids_are_stringified() -> None:
    out = request({"userId": 42, "event": "X", "messageId": 7})
    assert isinstance(out, list)
    assert out[0].user_id == "42" and out[0].message_id == "7"


@pytest.mark.parametrize("value", [{"a": 1}, True, [1]])
def test_an_id_of_another_type_is_refused_naming_both_accepted_types(value: object) -> None:
    # "must be a string" sent a client that had a numeric id, which is accepted, astray.
    out = request(
        {"batch": [{"type": "track", "userId": "u", "event": "X", "anonymousId": value}]}, None
    )
    assert isinstance(out, Rejected)
    assert out.message == "batch[0].anonymousId must be a string or a number"


@pytest.mark.parametrize(
    ("payload", "route", "code"),
    [
        ({"event": "X"}, "track", "missing_id"),
        ({"userId": "u"}, "track", "missing_event"),
        ({"userId": "u", "event": 5}, "track", "missing_event"),
        ({"userId": "u", "event": "X", "properties": []}, "track", "invalid_field"),
        ({"userId": {"a": 1}, "event": "X"}, "track", "invalid_field"),
        ({"userId": True, "event": "X"}, "track", "invalid_field"),
        ({"userId": "u", "event": "X", "timestamp": "yesterday"}, "track", "invalid_timestamp"),
        ({"userId": "u", "event": "X", "timestamp": 12}, "track", "invalid_timestamp"),
        ({"userId": "u"}, "group", "missing_id"),
        ({"userId": "u"}, "alias", "missing_id"),
        ({"batch": "nope"}, None, "invalid_batch"),
        ({"batch": []}, None, "invalid_batch"),
        ({"batch": [{"type": "launch", "userId": "u"}]}, None, "invalid_type"),
        ({"batch": [1]}, None, "invalid_message"),
        ({"userId": "u", "event": "X", "traits": "x"}, "identify", "invalid_field"),
    ],
)
def test_bad_messages_are_rejected_with_a_code(payload: dict, route: str | None, code: str) -> None:
    out = request(payload, route)
    assert isinstance(out, Rejected)
    assert out.code == code and out.status == 400 and out.message


def test_one_bad_message_rejects_the_whole_batch() -> None:
    out = request(
        {"batch": [{"type": "track", "userId": "u", "event": "ok"}, {"type": "track"}]}, None
    )
    assert isinstance(out, Rejected)
    assert "batch[1]" in out.message


def test_oversize_message_is_rejected() -> None:
    big = {"userId": "u", "event": "X", "properties": {"blob": "x" * MAX_MESSAGE_BYTES}}
    out = request(big)
    assert isinstance(out, Rejected) and out.code == "message_too_large"


def test_oversize_request_is_rejected() -> None:
    out = parse.decode_json(b"{" + b" " * MAX_REQUEST_BYTES + b"}")
    assert isinstance(out, Rejected) and out.code == "request_too_large"


def test_clock_skew_is_corrected() -> None:
    # Device clock one hour ahead: the event happened 10 s before sending.
    out = request(
        {
            "userId": "u",
            "event": "X",
            "timestamp": "2027-01-15T09:00:00Z",
            "sentAt": "2027-01-15T09:00:10.000Z",
        }
    )
    assert isinstance(out, list)
    assert out[0].timestamp == pytest.approx(NOW - 10, abs=1e-3)


def test_timestamp_without_sent_at_is_taken_as_is() -> None:
    out = request({"userId": "u", "event": "X", "timestamp": "2024-05-01T12:00:00.000+02:00"})
    assert isinstance(out, list)
    assert out[0].timestamp == 1714557600.0


def test_batch_sent_at_applies_to_messages() -> None:
    out = request(
        {
            "sentAt": "2024-05-01T12:00:05Z",
            "batch": [
                {"type": "track", "userId": "u", "event": "X", "timestamp": "2024-05-01T12:00:00Z"}
            ],
        },
        None,
    )
    assert isinstance(out, list)
    assert out[0].timestamp == pytest.approx(NOW - 5, abs=1e-3)


@pytest.mark.parametrize("digits", ["", ".1", ".123", ".123456", ".123456789"])
def test_fractional_seconds(digits: str) -> None:
    assert isinstance(parse.parse_time(f"2026-11-26T16:39:10{digits}Z", "t"), float)


def test_gzip_and_deflate_bodies() -> None:
    body = msgspec.json.encode({"userId": "u", "event": "X"})
    assert parse.decompress(gzip.compress(body), "gzip") == body
    assert parse.decompress(zlib.compress(body), "deflate") == body
    assert parse.decompress(body, None) == body


def test_bad_gzip_is_rejected() -> None:
    out = parse.decompress(b"not gzip at all", "gzip")
    assert isinstance(out, Rejected) and out.code == "bad_encoding"
    truncated = gzip.compress(b'{"a": 1}' * 100)[:-10]
    out = parse.decompress(truncated, "gzip")
    assert isinstance(out, Rejected)


def test_gzip_bomb_is_refused() -> None:
    bomb = gzip.compress(b"{" + b" " * (MAX_REQUEST_BYTES * 4) + b"}")
    assert len(bomb) < MAX_REQUEST_BYTES
    out = parse.decompress(bomb, "gzip")
    assert isinstance(out, Rejected) and out.code == "request_too_large"


def test_unknown_encoding_is_rejected() -> None:
    assert isinstance(parse.decompress(b"x", "br"), Rejected)


@pytest.mark.parametrize("body", [b"", b"nope", b"[1,2]", b'"str"', b"{", b"\xff\xfe"])
def test_non_object_json_is_rejected(body: bytes) -> None:
    out = parse.decode_json(body)
    assert isinstance(out, Rejected) and out.code == "invalid_json"


def test_a_gzip_body_of_several_members_is_read_whole() -> None:
    """gzip allows a body to be several compressed members one after another (as streaming
    compressors write it); only the first was read, so such a body was refused as bad JSON."""
    import gzip

    from leadloop.ingest.model import MAX_REQUEST_BYTES
    from leadloop.ingest.parse import decompress

    text = b'{"batch": [{"type": "track", "userId": "u", "event": "E"}]}'
    body = gzip.compress(text[:20]) + gzip.compress(text[20:])
    assert decompress(body, "gzip") == text
    assert decompress(body + b"\x00" * 8, "gzip") == text  # padding, as gzip readers allow
    # The limit holds over all members together, and garbage after a member is refused.
    half = b"x" * (MAX_REQUEST_BYTES // 2 + 1)
    assert isinstance(decompress(gzip.compress(half) * 2, "gzip"), Rejected)
    bad = decompress(gzip.compress(text) + b"junk", "gzip")
    assert isinstance(bad, Rejected) and bad.code == "bad_encoding"


@pytest.mark.parametrize(
    "digits", [".123٤", ".123456789٤", ".1234567²", ".١٢٣٤٥٦٧٨٩", ".123456x", ".1234567 1"]
)
def test_fractional_seconds_are_ascii_digits_and_nothing_after_them(digits: str) -> None:
    # ISO 8601 is ASCII (as `fromisoformat` reads it): an SDK's time is never typed. The trim
    # past six digits also dropped `²` and `٤`, and Python skips anything after the sixth.
    assert isinstance(parse.parse_time(f"2026-11-26T16:39:10{digits}Z", "t"), parse.Rejected)
