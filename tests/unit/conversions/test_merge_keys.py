"""`merge_keys`: two profiles' match keys as one person's."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.conversions.capture import MatchKeys, merge_keys

# (survivor's keys, absorbed's keys, what the merge keeps)
CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    (
        {"fbc": "fb.1.1.a", "fbc_at": 100.0},
        {"fbc": "fb.1.2.b", "fbc_at": 200.0},
        {"fbc": "fb.1.2.b"},
    ),
    (
        {"gclid": "g-new", "gclid_at": 300.0},
        {"gclid": "g-old", "gclid_at": 50.0},
        {"gclid": "g-new"},
    ),
    ({}, {"fbp": "fb.1.3.4", "fbp_at": 10.0}, {"fbp": "fb.1.3.4", "fbp_at": 10.0}),
    ({"ttclid": "t-s", "ttclid_at": 1.0}, {"ttclid": "t-a", "ttclid_at": 1.0}, {"ttclid": "t-s"}),
    ({"gclid": "g-s", "gclid_at": 5.0}, {"gclid": "g-untimed"}, {"gclid": "g-s"}),
    (
        {"ip": "1.1.1.1", "user_agent": "old", "web_at": 100.0},
        {"ip": "2.2.2.2", "user_agent": "new", "web_at": 200.0},
        {"ip": "2.2.2.2", "user_agent": "new", "web_at": 200.0},
    ),
    (
        {"consent": True, "consent_at": 500.0},
        {"consent": False, "consent_at": 400.0},
        {"consent": True, "consent_at": 500.0},
    ),
    ({}, {"lead_id": "222222222222222"}, {"lead_id": "222222222222222"}),
    (
        {"lead_id": "111111111111111"},
        {"lead_id": "222222222222222"},
        {"lead_id": "111111111111111"},
    ),
]


@pytest.mark.parametrize(("survivor", "absorbed", "kept"), CASES)
def test_each_key_comes_from_the_side_that_captured_it_later(
    survivor: dict[str, Any], absorbed: dict[str, Any], kept: dict[str, Any]
) -> None:
    merged = merge_keys(MatchKeys(**survivor), MatchKeys(**absorbed))
    assert {name: getattr(merged, name) for name in kept} == kept


def test_an_empty_side_changes_nothing() -> None:
    keys = MatchKeys(fbc="fb.1.1.a", fbc_at=1.0)
    assert merge_keys(keys, MatchKeys()) is keys
    assert merge_keys(MatchKeys(), keys) == keys
