"""Segment tracking-spec requests to log rows: a pure function of bytes, path and `now`.

The whole request is accepted or rejected: one bad message in a batch rejects the batch,
so a 400 never leaves half of a batch stored (clients do not retry 400s).
"""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

import msgspec

from leadloop.ingest.model import (
    MAX_DEPTH,
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    Accepted,
    Rejected,
)
from leadloop.ingest.values import check_values

SHORT_TYPES = {
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
SINGLE_TYPES = frozenset(SHORT_TYPES.values())
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
# Stages turn event times into dates (payloads, reports), so an event time is one `datetime`
# can hold, a day short of each end so that it is a local date in every time zone too. Skew
# correction can move a timestamp that parsed fine outside of it.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def decompress(body: bytes, encoding: str | None) -> bytes | Rejected:
    """Undo `Content-Encoding: gzip|deflate`, refusing bodies that inflate past the limit."""
    if not encoding or encoding.strip().lower() == "identity":
        return body
    kind = encoding.strip().lower()
    if kind not in ("gzip", "deflate", "x-gzip"):
        return Rejected("unsupported_encoding", f"Content-Encoding {encoding!r} is not supported")
    wbits = 16 + zlib.MAX_WBITS if kind != "deflate" else zlib.MAX_WBITS
    out = b""
    rest = body
    # gzip allows several members one after another (streaming compressors write them): each
    # is inflated in turn, under one limit for all; deflate has one stream.
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(rest, MAX_REQUEST_BYTES + 1 - len(out))
        except zlib.error as exc:
            return Rejected("bad_encoding", f"the body is not valid {kind}: {exc}")
        if len(out) > MAX_REQUEST_BYTES or inflater.unconsumed_tail:
            return Rejected(
                "request_too_large", f"the request exceeds {MAX_REQUEST_BYTES} bytes", 400
            )
        if not inflater.eof:
            return Rejected("bad_encoding", f"the {kind} body is truncated")
        rest = inflater.unused_data
        if not rest.strip(b"\x00"):  # trailing NUL padding, which gzip readers skip
            return out
        if kind == "deflate":
            return Rejected("bad_encoding", "the deflate body has data after its end")


def decode_json(body: bytes) -> dict[str, Any] | Rejected:
    return as_object(decode_json_value(body))


def as_object(value: Any) -> dict[str, Any] | Rejected:
    """A decoded body (or its refusal) that must be one JSON object."""
    if isinstance(value, Rejected):
        return value
    if not isinstance(value, dict):
        return Rejected("invalid_json", "the body must be a JSON object")
    return value


def decode_json_value(body: bytes) -> Any:
    """Any JSON document (a HubSpot delivery is an array), or a `Rejected`."""
    if len(body) > MAX_REQUEST_BYTES:
        return Rejected("request_too_large", f"the request exceeds {MAX_REQUEST_BYTES} bytes")
    try:
        value = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        return Rejected("invalid_json", f"the body is not valid JSON: {exc}")
    except UnicodeDecodeError:  # msgspec checks UTF-8 inside strings, and raises this
        return Rejected("invalid_json", "the body is not valid UTF-8")
    except RecursionError:
        return Rejected("invalid_json", f"the body nests deeper than {MAX_DEPTH} levels")
    return value


def write_key_of(payload: dict[str, Any]) -> str | None:
    key = payload.get("writeKey")
    return key if isinstance(key, str) and key else None


def parse_time(value: Any, field: str) -> float | Rejected | None:
    """ISO-8601 with `Z` or an offset, 0-9 fractional digits; a naive time is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        return Rejected("invalid_timestamp", f"{field} must be an ISO-8601 string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts up to 6 fractional digits: trim nanoseconds. And it skips whatever
    # follows the sixth (`.123456x`, `.123456٤`): only an offset or the end may.
    dot = text.find(".")
    if dot != -1:
        end = dot + 1
        while end < len(text) and "0" <= text[end] <= "9":  # ISO 8601 digits are ASCII
            end += 1
        if end < len(text) and text[end] not in "+-":
            return _not_iso(field, value)
        if end - dot - 1 > 6:
            text = text[: dot + 7] + text[end:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return _not_iso(field, value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC).timestamp()
    return parsed.timestamp()


def _not_iso(field: str, value: str) -> Rejected:
    return Rejected("invalid_timestamp", f"{field} is not an ISO-8601 time: {value!r}")


def _id(message: dict[str, Any], field: str, index: str) -> str | Rejected | None:
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return Rejected("invalid_field", f"{index}{field} must be a string or a number")
    text = str(value).strip() if not isinstance(value, str) else value.strip()
    if len(text) > 512:
        return Rejected("invalid_field", f"{index}{field} is longer than 512 characters")
    return text or None


RESERVED_ID_PREFIXES = (
    "timer:",
    "scoring:",
    "jpu:",
    "channels:",
    "stripe-",
    "hubspot-",
    "hook-",
    "client:",
)
"""Namespaces of the ids the engine gives events itself: timers firing, stage actions, journey
profile updates, channel receipts, the Stripe and HubSpot hooks, and the ids a standard
source gives messages without their own. They share the log's
unique `(workspace, message_id)` with every sender's `messageId`, and a sender can derive
some of them (a stage action's id holds the id of the event that crossed the threshold), so a
sender's id that starts with one is stored as `client:` + the id: the same every time, so its
retries are still recognised, and never equal to an id the engine writes."""


def parse_message(
    message: Any,
    type_: str | None,
    *,
    received_at: float,
    sent_at: float | None,
    index: str = "",
    engine_ids: bool = False,
) -> Accepted | Rejected:
    """`engine_ids`: the message comes from the engine's own hooks (Stripe, HubSpot), whose ids
    are in the reserved namespaces; every other sender's are kept out of them."""
    if not isinstance(message, dict):
        return Rejected("invalid_message", f"{index}message must be a JSON object")
    mtype = type_ or message.get("type")
    if not isinstance(mtype, str) or mtype not in SINGLE_TYPES:
        return Rejected("invalid_type", f"{index}type must be one of {sorted(SINGLE_TYPES)}")
    for field in _OBJECT_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, dict):
            return Rejected("invalid_field", f"{index}{field} must be an object")
    ids: dict[str, str | None] = {}
    for field in ("userId", "anonymousId", "groupId", "previousId", "messageId"):
        value = _id(message, field, index)
        if isinstance(value, Rejected):
            return value
        ids[field] = value
    if mtype == "alias":
        if not ids["userId"] or not ids["previousId"]:
            return Rejected("missing_id", f"{index}alias needs userId and previousId")
    elif not ids["userId"] and not ids["anonymousId"]:
        return Rejected("missing_id", f"{index}userId or anonymousId is required")
    if mtype == "group" and not ids["groupId"]:
        return Rejected("missing_id", f"{index}group needs groupId")
    name: str | None = None
    if mtype == "track":
        event = message.get("event")
        if not isinstance(event, str) or not event.strip():
            return Rejected("missing_event", f"{index}track needs an event name")
        name = event.strip()
    elif mtype in ("page", "screen"):
        raw_name = message.get("name")
        if raw_name is not None and not isinstance(raw_name, str):
            return Rejected("invalid_field", f"{index}name must be a string")
        name = raw_name
    when = _event_time(message, received_at=received_at, sent_at=sent_at, index=index)
    if isinstance(when, Rejected):
        return when
    body = _encoder.encode(message)
    if len(body) > MAX_MESSAGE_BYTES:
        return Rejected(
            "message_too_large", f"{index}message exceeds {MAX_MESSAGE_BYTES} bytes ({len(body)})"
        )
    bad_value = check_values(message, body, index)
    if bad_value is not None:
        return bad_value
    message_id = ids["messageId"]
    if message_id and not engine_ids and message_id.startswith(RESERVED_ID_PREFIXES):
        message_id = "client:" + message_id
    return Accepted(
        message_id=message_id or f"ll-{uuid.uuid4()}",
        type=mtype,
        event=name,
        user_id=ids["userId"],
        anonymous_id=ids["anonymousId"],
        group_id=ids["groupId"],
        previous_id=ids["previousId"],
        timestamp=when,
        received_at=received_at,
        body=body,
    )


def _event_time(
    message: dict[str, Any], *, received_at: float, sent_at: float | None, index: str
) -> float | Rejected:
    """The device's time of the event, corrected for its clock's skew.

    `timestamp` is the device time Segment's SDKs send; RudderStack's JavaScript and mobile
    SDKs send `originalTimestamp` instead, which counts only when there is no `timestamp`
    (Segment's and rudder-server's rule). Both are checked whenever present, so one message
    is never accepted or refused depending on which of them it carries.
    """
    timestamp = parse_time(message.get("timestamp"), f"{index}timestamp")
    if isinstance(timestamp, Rejected):
        return timestamp
    original = parse_time(message.get("originalTimestamp"), f"{index}originalTimestamp")
    if isinstance(original, Rejected):
        return original
    own_sent = parse_time(message.get("sentAt"), f"{index}sentAt")
    if isinstance(own_sent, Rejected):
        return own_sent
    sent = own_sent if own_sent is not None else sent_at
    field, device = (
        ("timestamp", timestamp) if timestamp is not None else ("originalTimestamp", original)
    )
    # Segment's skew correction: the device clock may be off, the gap between the event and
    # sending it is not. Without a device time the receipt is the time, checked all the same:
    # a simulation's clock moved by its events' waits can be past year 9999.
    if device is None:
        when = received_at
    else:
        when = device if sent is None else received_at - (sent - device)
    if not _EARLIEST <= when <= _LATEST:
        return Rejected(
            "invalid_timestamp",
            f"{index}{field} is not between 0001-01-02 and 9999-12-31 (after correcting it "
            "by sentAt)",
        )
    return when


def parse_request(
    payload: dict[str, Any],
    route_type: str | None,
    *,
    received_at: float,
    engine_ids: bool = False,
) -> list[Accepted] | Rejected:
    """`route_type` is the single-message type, or None for a batch; `engine_ids` as for
    `parse_message`."""
    sent_at = parse_time(payload.get("sentAt"), "sentAt")
    if isinstance(sent_at, Rejected):
        return sent_at
    if route_type is not None:
        one = parse_message(
            payload, route_type, received_at=received_at, sent_at=sent_at, engine_ids=engine_ids
        )
        return one if isinstance(one, Rejected) else [one]
    batch = payload.get("batch")
    if not isinstance(batch, list):
        return Rejected("invalid_batch", "batch must be a list of messages")
    if not batch:
        return Rejected("invalid_batch", "batch is empty")
    shared_context = payload.get("context")
    accepted = []
    for i, message in enumerate(batch):
        if isinstance(message, dict) and isinstance(shared_context, dict):
            # A batch-level context applies to every message that has none of its own.
            message = (
                {"context": shared_context, **message} if "context" not in message else message
            )
        one = parse_message(
            message,
            None,
            received_at=received_at,
            sent_at=sent_at,
            index=f"batch[{i}].",
            engine_ids=engine_ids,
        )
        if isinstance(one, Rejected):
            return one
        accepted.append(one)
    return accepted
