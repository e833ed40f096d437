"""Standard Webhooks signing against the published vectors and the reference library."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadloop.outbox.signing import (
    Rejection,
    new_secret,
    secret_key,
    sign_webhook,
    verify_webhook,
)

VECTORS = Path(__file__).parents[3].parent / "shared/research/webhook-vectors.json"


def _vectors() -> dict[str, Any]:
    if not VECTORS.exists():
        pytest.skip(f"webhook vectors not found at {VECTORS} (the ../shared checkout is absent)")
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


def _positive() -> list[dict[str, Any]]:
    return list(_vectors()["vectors"]) if VECTORS.exists() else []


def _negative() -> list[dict[str, Any]]:
    return list(_vectors()["negative_vectors"]) if VECTORS.exists() else []


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


NEGATIVE_REASONS = {
    "tampered-body": Rejection.NO_MATCH,
    "timestamp-too-old": Rejection.TOO_OLD,
    "timestamp-too-new": Rejection.TOO_NEW,
    "wrong-secret": Rejection.NO_MATCH,
    "missing-header": Rejection.MISSING_HEADERS,
}


def test_vector_file_is_complete() -> None:
    data = _vectors()
    assert len(data["vectors"]) == 4
    assert {v["name"] for v in data["negative_vectors"]} == set(NEGATIVE_REASONS)


@pytest.mark.parametrize("vector", _positive(), ids=_ids(_positive()))
def test_signs_every_positive_vector(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    headers = sign_webhook(vector["secret"], vector["msg_id"], vector["timestamp"], body)
    assert headers["webhook-signature"] == vector["expected_signature"]
    assert headers["webhook-id"] == vector["headers"]["webhook-id"]
    assert headers["webhook-timestamp"] == vector["headers"]["webhook-timestamp"]
    if "secondary_secret" in vector:
        rotated = sign_webhook(
            [vector["secondary_secret"], vector["secret"]],
            vector["msg_id"],
            vector["timestamp"],
            body,
        )
        assert rotated["webhook-signature"] == vector["headers"]["webhook-signature"]


@pytest.mark.parametrize("vector", _positive(), ids=_ids(_positive()))
def test_verifies_every_positive_vector(vector: dict[str, Any]) -> None:
    body = vector["body"].encode()
    now = vector["timestamp"] + 3
    assert verify_webhook(vector["secret"], vector["headers"], body, now)
    if "secondary_secret" in vector:
        assert verify_webhook([vector["secondary_secret"]], vector["headers"], body, now)


@pytest.mark.parametrize("vector", _negative(), ids=_ids(_negative()))
def test_rejects_every_negative_vector(vector: dict[str, Any]) -> None:
    result = verify_webhook(
        vector["secret"], vector["headers"], vector["body"].encode(), vector["verify_at_unix"]
    )
    assert not result
    assert result.reason is NEGATIVE_REASONS[vector["name"]]


@pytest.fixture
def frozen_library_clock(monkeypatch: pytest.MonkeyPatch) -> Any:
    """standardwebhooks reads `datetime.now`; clients.md: freeze it near the vector time."""
    from standardwebhooks import webhooks

    class Frozen(datetime):
        at = 0.0

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(cls.at, tz=UTC)

    monkeypatch.setattr(webhooks, "datetime", Frozen)
    return Frozen


@pytest.mark.parametrize("vector", _positive(), ids=_ids(_positive()))
def test_reference_library_accepts_what_we_sign(
    vector: dict[str, Any], frozen_library_clock: Any
) -> None:
    from standardwebhooks import Webhook

    frozen_library_clock.at = vector["timestamp"] + 3
    body = vector["body"].encode()
    headers = sign_webhook(vector["secret"], vector["msg_id"], vector["timestamp"], body)
    assert Webhook(vector["secret"]).verify(body, headers, json_parse=False) is None
    reference = Webhook(vector["secret"]).sign(
        vector["msg_id"], datetime.fromtimestamp(vector["timestamp"], tz=UTC), vector["body"]
    )
    assert reference == headers["webhook-signature"]


@given(
    body=st.binary(max_size=512),
    msg_id=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=40),
    timestamp=st.integers(min_value=0, max_value=2**33),
    key=st.binary(min_size=24, max_size=64),
    skew=st.integers(min_value=-300, max_value=300),
)
def test_sign_then_verify_roundtrips(
    body: bytes, msg_id: str, timestamp: int, key: bytes, skew: int
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = sign_webhook(secret, msg_id, timestamp, body)
    assert verify_webhook([secret], headers, body, timestamp + skew)
    assert verify_webhook(key, headers, body, timestamp + skew)  # raw bytes are the same key
    assert not verify_webhook(secret, headers, body + b"x", timestamp)


@given(key=st.binary(min_size=24, max_size=64), body=st.text(max_size=64))
def test_reference_library_verifies_roundtrip(key: bytes, body: str) -> None:
    from standardwebhooks import Webhook, webhooks

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.fromtimestamp(1_714_564_801, tz=UTC)

    secret = "whsec_" + base64.b64encode(key).decode()
    data = body.encode()
    headers = sign_webhook(secret, "msg_1", 1_714_564_800, data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webhooks, "datetime", Frozen)
        assert Webhook(secret).verify(data, headers, json_parse=False) is None


def test_svix_alias_verifies() -> None:
    secret = new_secret()
    headers = sign_webhook(secret, "msg_1", 1_000, b"{}")
    aliased = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    assert verify_webhook(secret, aliased, b"{}", 1_000)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("v1", Rejection.MALFORMED_SIGNATURE),  # no comma: the library raises ValueError here
        ("v1a,abc v2,xyz", Rejection.MALFORMED_SIGNATURE),
        ("v1,not*base64", Rejection.MALFORMED_SIGNATURE),
        ("v1," + base64.b64encode(b"\0" * 32).decode(), Rejection.NO_MATCH),
    ],
)
def test_malformed_signature_headers_are_values_not_exceptions(
    signature: str, reason: Rejection
) -> None:
    secret = new_secret()
    headers = {**sign_webhook(secret, "m", 10, b""), "webhook-signature": signature}
    assert verify_webhook(secret, headers, b"", 10).reason is reason


@pytest.mark.parametrize("stamp", ["abc", "1.5", "-1", "", "1" * 20, "１２"])
def test_bad_timestamps(stamp: str) -> None:
    secret = new_secret()
    headers = {**sign_webhook(secret, "m", 10, b""), "webhook-timestamp": stamp}
    result = verify_webhook(secret, headers, b"", 10)
    assert result.reason in {Rejection.BAD_TIMESTAMP, Rejection.MISSING_HEADERS}


def test_tolerance_boundary_matches_reference() -> None:
    secret = new_secret()
    headers = sign_webhook(secret, "m", 1_000, b"")
    assert verify_webhook(secret, headers, b"", 1_300)
    assert verify_webhook(secret, headers, b"", 700)
    assert verify_webhook(secret, headers, b"", 1_301).reason is Rejection.TOO_OLD
    assert verify_webhook(secret, headers, b"", 699).reason is Rejection.TOO_NEW


def test_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 32
    unpadded = "whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("=")
    assert secret_key(unpadded) == b"k" * 25
    for bad in ("whsec_", "whsec_***", b""):
        with pytest.raises(ValueError):
            secret_key(bad)
    with pytest.raises(ValueError):
        new_secret(8)
    with pytest.raises(ValueError):
        sign_webhook([], "m", 1, b"")
