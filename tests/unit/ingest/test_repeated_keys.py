"""A signed body that repeats a key in one object is refused, naming the key: the signer's
parser may read the first value where ours reads the last, and the signature vouches for
bytes, not for one reading of them."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from leadloop.ingest import parse
from leadloop.ingest.model import Rejected
from leadloop.ingest.repeated import decode_signed, refuse_repeated_params, repeated_key
from leadloop.ingest.sources import read_delivery
from leadloop.outbox.signing import sign_webhook
from leadloop.playbook.model import InboundSource

SECRET = "whsec_dGVzdC1zZWNyZXQtb2YtdGhpcnR5LXR3by1ieXRlcw=="
NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"type":"track","type":"identify"}', "type"),
        (b'{"batch":[{"userId":"a"},{"userId":"b","event":"X","event":"Y"}]}', "event"),
        (b'{"a":{"b":{"c":1,"c":1}}}', "c"),  # the same value twice is still two keys
        (b'{"type":"track","\\u0074ype":"identify"}', "type"),  # one key, escaped
        (b'[{"eventId":1,"eventId":2}]', "eventId"),
        (b'{"":1,"":2}', ""),
    ],
)
def test_a_repeated_key_is_found_and_named(body: bytes, key: str) -> None:
    assert repeated_key(body) == key
    refused = decode_signed(body)
    assert isinstance(refused, Rejected)
    assert (refused.status, refused.code) == (400, "duplicate_key")
    assert repr(key) in refused.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}',  # one name in different objects
        b'{"Type":1,"type":2}',
        b'{"x":1.5e300,"y":"\\u00e9"}',
    ],
)
def test_keys_that_do_not_repeat_in_one_object_pass(body: bytes) -> None:
    assert repeated_key(body) is None
    assert not isinstance(decode_signed(body), Rejected)


def test_numbers_past_ints_digit_limit_are_no_error() -> None:
    # msgspec refuses the body later (out of a double's range); the search must not raise.
    assert repeated_key(b'{"n":' + b"9" * 5000 + b',"n":' + b"9" * 5000 + b"}") == "n"
    assert repeated_key(b'{"n":' + b"9" * 5000 + b".5e3}") is None


def test_a_body_that_is_no_json_is_refused_as_such() -> None:
    refused = decode_signed(b'{"a":1,"a":')
    assert isinstance(refused, Rejected) and refused.code == "invalid_json"


def test_a_long_key_is_named_shortened() -> None:
    key = "k" * 5000
    refused = decode_signed(json.dumps({key: 1}).replace("}", f', "{key}": 2}}').encode())
    assert isinstance(refused, Rejected) and refused.code == "duplicate_key"
    assert len(refused.message) < 300


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"track","userId":"u","event":"Deal Won","type":"identify"}',
        b'{"batch":[{"type":"track","userId":"u","event":"A","userId":"v"}]}',
    ],
)
def test_a_signed_standard_delivery_with_a_repeated_key_is_refused(body: bytes) -> None:
    source = InboundSource(id="crm", kind="standard", secret=SECRET, enabled=True)
    out = read_delivery(source, sign_webhook(SECRET, "msg_1", NOW, body), body, NOW)
    assert isinstance(out, Rejected), out
    assert (out.status, out.code) == (400, "duplicate_key")


def test_a_signed_stripe_event_with_a_repeated_key_is_refused() -> None:
    body = b'{"id":"evt_1","type":"checkout.session.completed","data":{"object":{}},"id":"evt_2"}'
    mac = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    source = InboundSource(id="pay", kind="stripe", secret=SECRET, enabled=True)
    out = read_delivery(source, {"Stripe-Signature": f"t={NOW},v1={mac}"}, body, NOW)
    assert isinstance(out, Rejected), out
    assert (out.status, out.code) == (400, "duplicate_key")
    assert "'id'" in out.message


def test_the_unsigned_tracking_api_keeps_the_last_value_as_documented() -> None:
    # docs/tracking.md: no signature to disagree with, and the check costs more than the parse.
    decoded = parse.decode_json(b'{"type":"track","type":"identify"}')
    assert decoded == {"type": "identify"}


@pytest.mark.parametrize(
    ("pairs", "name"),
    [
        (
            [("MessageStatus", "failed"), ("MessageSid", "SM1"), ("MessageStatus", "sent")],
            "MessageStatus",
        ),
        ([("A", ""), ("A", "")], "A"),  # the same value twice is still two parameters
        ([("n" * 300, "1"), ("n" * 300, "2")], "n" * 100 + "..."),
    ],
)
def test_a_repeated_form_parameter_is_refused_naming_it(
    pairs: list[tuple[str, str]], name: str
) -> None:
    refused = refuse_repeated_params(pairs)
    assert refused is not None and refused.code == "duplicate_key"
    assert f"parameter {name!r}:" in refused.message


def test_form_parameters_that_do_not_repeat_pass() -> None:
    assert refuse_repeated_params([("MessageSid", "SM1"), ("messagesid", "SM1")]) is None
    assert refuse_repeated_params([]) is None
