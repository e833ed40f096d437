"""Tracking tokens: round trips, and every tampering refused."""

from __future__ import annotations

import base64

import msgspec
import pytest

from leadloop.channels.tracking import Token, is_automated_open, sign, verify

KEY = b"k" * 32


def test_round_trip_per_kind() -> None:
    for token in (
        Token("o", "default", "m-1"),
        Token("u", "default", "m-1"),
        Token("c", "ws", "m-2", "https://acme.test/a?b=1&c=ü"),
    ):
        assert verify(KEY, sign(KEY, token), token.kind) == token


def test_tampering_is_refused() -> None:
    text = sign(KEY, Token("c", "ws", "m", "https://acme.test/"))
    payload, sig = text.split(".")
    evil = base64.urlsafe_b64encode(msgspec.json.encode(["c", "ws", "m", "https://evil.test/"]))
    forged = evil.rstrip(b"=").decode()
    assert verify(KEY, f"{forged}.{sig}", "c") is None
    assert verify(KEY, f"{payload}.{sig[:-1]}x", "c") is None
    assert verify(b"other-key", text, "c") is None
    assert verify(KEY, text, "o") is None  # a click token is not a pixel token
    assert verify(KEY, "", "c") is None
    assert verify(KEY, "a" * 10_000, "c") is None
    assert verify((b"new", KEY), text, "c") is not None  # rotation: old key still verifies


@pytest.mark.parametrize("url", ["javascript:alert(1)", "//evil.test", "mailto:a@b", "/relative"])
def test_only_absolute_http_links_are_signed(url: str) -> None:
    with pytest.raises(ValueError):
        sign(KEY, Token("c", "ws", "m", url))


def test_automated_opens() -> None:
    assert is_automated_open("Mozilla/5.0", 100.0, 0.0)[0]  # Apple MPP
    assert is_automated_open("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", 100.0, 0.0)[0]
    assert is_automated_open("Thunderbird", 5.0, 0.0) == (True, "within 10s of sending")
    assert is_automated_open("Thunderbird", 60.0, 0.0) == (False, "")
    assert is_automated_open(None, 60.0, None) == (False, "")
