"""Inbound signatures: Stripe and HubSpot vectors from the real libraries, plus negatives."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hubspot.utils.signature import Signature
from hypothesis import given
from hypothesis import strategies as st

from leadloop.ingest.webhooks_verify import (
    Rejection,
    decode_hubspot_uri,
    verify_hubspot,
    verify_standard_webhook,
    verify_stripe,
)
from leadloop.outbox.signing import new_secret, sign_webhook

VECTORS = Path(__file__).parents[3].parent / "shared/research/webhook-vectors.json"


def _section(name: str) -> dict[str, Any]:
    if not VECTORS.exists():
        return {"vectors": [], "negative_vectors": []}
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))[name]
    return data


def _require_vectors() -> None:
    if not VECTORS.exists():
        pytest.skip(f"webhook vectors not found at {VECTORS} (the ../shared checkout is absent)")


STRIPE = _section("stripe")
HUBSPOT = _section("hubspot")


def _names(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


# --- Stripe -------------------------------------------------------------------------------


def test_vectors_present() -> None:
    _require_vectors()
    assert STRIPE["vectors"] and STRIPE["negative_vectors"] and HUBSPOT["vectors"]


@pytest.mark.parametrize("vector", STRIPE["vectors"], ids=_names(STRIPE["vectors"]))
def test_stripe_vectors_verify(vector: dict[str, Any]) -> None:
    headers = {"Stripe-Signature": vector["expected_header"]}
    assert verify_stripe(
        vector["secret"], headers, vector["body"].encode(), vector["timestamp"] + 5
    )


STRIPE_REASONS = {"tampered-body": Rejection.NO_MATCH, "too-old": Rejection.TOO_OLD}


@pytest.mark.parametrize(
    "vector", STRIPE["negative_vectors"], ids=_names(STRIPE["negative_vectors"])
)
def test_stripe_negative_vectors(vector: dict[str, Any]) -> None:
    headers = {"stripe-signature": vector["header"]}
    result = verify_stripe(
        vector["secret"], headers, vector["body"].encode(), vector["verify_at_unix"]
    )
    assert result.reason is STRIPE_REASONS[vector["name"]]


def _stripe_header(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def test_stripe_accepts_future_timestamps_like_stripe_python() -> None:
    header = _stripe_header("whsec_x", 10_000, b"{}")
    assert verify_stripe("whsec_x", {"Stripe-Signature": header}, b"{}", 0)


def test_stripe_key_is_the_whole_secret_string_not_base64() -> None:
    secret = new_secret()
    standard = sign_webhook(secret, "evt", 100, b"{}")["webhook-signature"]
    mac = base64.b64decode(standard.split(",", 1)[1]).hex()
    header = f"t=100,v1={mac}"
    assert verify_stripe(secret, {"Stripe-Signature": header}, b"{}", 100).reason is (
        Rejection.NO_MATCH
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, Rejection.MISSING_HEADERS),
        ("v1=abc", Rejection.MALFORMED_SIGNATURE),
        ("t=100", Rejection.MALFORMED_SIGNATURE),
        ("t=abc,v1=00", Rejection.MALFORMED_SIGNATURE),
        ("t=100,v0=00", Rejection.MALFORMED_SIGNATURE),
        ("garbage", Rejection.MALFORMED_SIGNATURE),
        ("t=100,v1=zz", Rejection.NO_MATCH),
    ],
)
def test_stripe_bad_headers(header: str | None, reason: Rejection) -> None:
    headers = {} if header is None else {"Stripe-Signature": header}
    assert verify_stripe(["whsec_a", "whsec_b"], headers, b"", 100).reason is reason


def test_stripe_rotation_any_secret_matches() -> None:
    header = _stripe_header("whsec_new", 100, b"x")
    assert verify_stripe(["whsec_old", "whsec_new"], {"Stripe-Signature": header}, b"x", 100)


# --- HubSpot ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", HUBSPOT["vectors"], ids=_names(HUBSPOT["vectors"]))
def test_hubspot_v3_vectors(vector: dict[str, Any]) -> None:
    now = int(vector["headers"]["X-HubSpot-Request-Timestamp"]) / 1000 + 5
    body = vector["body"].encode()
    args = (vector["client_secret"], vector["headers"], vector["method"], vector["uri"], body)
    assert verify_hubspot(*args, now)
    assert verify_hubspot(*args, now + 301).reason is Rejection.TOO_OLD
    tampered = (*args[:4], body + b" ")
    assert verify_hubspot(*tampered, now).reason is Rejection.NO_MATCH
    wrong_uri = (*args[:3], vector["uri"] + "&x=1", body)
    assert verify_hubspot(*wrong_uri, now).reason is Rejection.NO_MATCH


@pytest.mark.parametrize("vector", HUBSPOT["vectors"], ids=_names(HUBSPOT["vectors"]))
def test_hubspot_legacy_vectors_only_when_allowed(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    for version in ("v1", "v2"):
        headers = {
            "X-HubSpot-Signature": vector["legacy"][f"X-HubSpot-Signature-Version {version}"],
            "X-HubSpot-Signature-Version": version,
        }
        args = (vector["client_secret"], headers, vector["method"], vector["uri"], body, 0.0)
        assert verify_hubspot(*args, allow_legacy=True)
        assert verify_hubspot(*args).reason is Rejection.MISSING_HEADERS


HUBSPOT_SECRET = "00000000-1111-2222-3333-444444444444"


def _hubspot_v3_headers(
    body: str, uri: str, stamp_ms: int, secret: str = HUBSPOT_SECRET
) -> dict[str, str]:
    """Signed by HubSpot's own Python client, not by us."""
    signature = Signature.get_signature(secret, body, "v3", uri, "POST", str(stamp_ms))
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": str(stamp_ms)}


def test_the_hubspot_client_reproduces_the_research_vector() -> None:
    _require_vectors()
    (vector,) = HUBSPOT["vectors"]
    stamp = int(vector["headers"]["X-HubSpot-Request-Timestamp"])
    made = _hubspot_v3_headers(vector["body"], vector["uri"], stamp, vector["client_secret"])
    assert made["X-HubSpot-Signature-v3"] == vector["headers"]["X-HubSpot-Signature-v3"]


@given(
    body=st.text(max_size=200),
    query=st.text(alphabet="abcxyz=&0123456789", max_size=20),
    skew_ms=st.integers(-300_000, 300_000),
)
def test_hubspot_client_signatures_verify(body: str, query: str, skew_ms: int) -> None:
    uri = f"https://hooks.example.com/hooks/inbound/default/hubspot?{query}"
    now = 1_714_564_800.0
    headers = _hubspot_v3_headers(body, uri, int(now * 1000) + skew_ms)
    assert verify_hubspot(HUBSPOT_SECRET, headers, "POST", uri, body.encode(), now)
    assert verify_hubspot("other-secret", headers, "POST", uri, body.encode(), now).reason is (
        Rejection.NO_MATCH
    )


def test_hubspot_client_accepts_what_we_accept_now() -> None:
    """`Signature.is_valid` reads the wall clock: both sides agree on a request stamped now."""
    import time

    uri, body, now = "https://h.example/hooks/inbound/default/hubspot", "[]", time.time()
    headers = _hubspot_v3_headers(body, uri, int(now * 1000))
    signature, stamp = headers["X-HubSpot-Signature-v3"], headers["X-HubSpot-Request-Timestamp"]
    assert Signature.is_valid(signature, HUBSPOT_SECRET, body, uri, "POST", "v3", stamp)
    assert verify_hubspot(HUBSPOT_SECRET, headers, "POST", uri, body.encode(), now)


@pytest.mark.parametrize(
    ("skew_s", "reason"),
    [(-301, Rejection.TOO_OLD), (301, Rejection.TOO_NEW), (86_400, Rejection.TOO_NEW)],
)
def test_hubspot_timestamps_outside_five_minutes_either_way(skew_s: int, reason: Rejection) -> None:
    uri, now = "https://h.example/x", 1_714_564_800.0
    headers = _hubspot_v3_headers("[]", uri, int((now + skew_s) * 1000))
    assert verify_hubspot(HUBSPOT_SECRET, headers, "POST", uri, b"[]", now).reason is reason


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_hubspot_client_legacy_signatures_need_the_opt_in(version: str) -> None:
    uri, body = "https://h.example/x", '[{"eventId": 1}]'
    signature = Signature.get_signature(HUBSPOT_SECRET, body, version, uri, "POST")
    headers = {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": version}
    args = (HUBSPOT_SECRET, headers, "POST", uri, body.encode(), 0.0)
    assert verify_hubspot(*args, allow_legacy=True)
    assert verify_hubspot(*args).reason is Rejection.MISSING_HEADERS
    tampered = (*args[:4], body.encode() + b" ", 0.0)
    assert verify_hubspot(*tampered, allow_legacy=True).reason is Rejection.NO_MATCH


def test_hubspot_uri_decoding() -> None:
    raw = "https://h.example/p%3Aa%2fb?q=%40x%20y%253A%2C"
    assert decode_hubspot_uri(raw) == "https://h.example/p:a/b?q=@x%20y%253A,"
    secret, stamp, body = "s3cret", "1714564800000", b"[]"
    signed = b"POST" + decode_hubspot_uri(raw).encode() + body + stamp.encode()
    signature = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    headers = {"X-HubSpot-Signature-v3": signature.decode(), "X-HubSpot-Request-Timestamp": stamp}
    assert verify_hubspot(secret, headers, "post", raw, body, 1_714_564_800)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, Rejection.MISSING_HEADERS),
        ({"X-HubSpot-Signature-v3": "abc="}, Rejection.MISSING_HEADERS),
        (
            {"X-HubSpot-Signature-v3": "abc=", "X-HubSpot-Request-Timestamp": "soon"},
            Rejection.BAD_TIMESTAMP,
        ),
        (
            {"X-HubSpot-Signature-v3": "not base64!", "X-HubSpot-Request-Timestamp": "1000"},
            Rejection.MALFORMED_SIGNATURE,
        ),
    ],
)
def test_hubspot_bad_headers(headers: dict[str, str], reason: Rejection) -> None:
    assert verify_hubspot("s", headers, "POST", "https://x/", b"", 1.0).reason is reason


def test_empty_configured_secrets_are_bugs() -> None:
    with pytest.raises(ValueError):
        verify_hubspot("", {}, "POST", "https://x/", b"", 1.0)
    with pytest.raises(ValueError):
        verify_stripe("", {"Stripe-Signature": "t=1,v1=00"}, b"", 1.0)


# --- Standard Webhooks (delegates to outbox.signing) ----------------------------------------


@given(body=st.binary(max_size=256), skew=st.integers(-300, 300))
def test_standard_webhook_roundtrip(body: bytes, skew: int) -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    headers = sign_webhook(secret, "msg_1", 1_000_000, body)
    assert verify_standard_webhook([secret], headers, body, 1_000_000 + skew)
    assert not verify_standard_webhook([secret], headers, body, 1_000_000 + 301)


# --- Header bytes past ASCII ----------------------------------------------------------------
# Header values arrive as latin-1 text (`ingest.hooks`), so a byte such as 0xE9 is `é`, and
# `base64.b64decode` raises a plain ValueError for non-ASCII text, not the binascii.Error
# caught: an unsigned request answered 500 with a traceback.


def test_a_non_ascii_hubspot_signature_is_malformed_not_a_crash() -> None:
    headers = {"X-HubSpot-Signature-v3": "abc\xe9=", "X-HubSpot-Request-Timestamp": "1000"}
    assert verify_hubspot("s", headers, "POST", "https://x/", b"", 1.0).reason is (
        Rejection.MALFORMED_SIGNATURE
    )


def test_a_non_ascii_standard_signature_entry_is_skipped_not_a_crash() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    headers = sign_webhook(secret, "msg_1", 1_000_000, b"{}")
    bad = {**headers, "webhook-signature": "v1,\xe9\xe9\xe9\xe9"}
    assert verify_standard_webhook([secret], bad, b"{}", 1_000_000).reason is (
        Rejection.MALFORMED_SIGNATURE
    )
    # A rotation header whose other entry is garbage still verifies on the good one.
    mixed = {**headers, "webhook-signature": "v1,\xe9 " + headers["webhook-signature"]}
    assert verify_standard_webhook([secret], mixed, b"{}", 1_000_000)
