"""`advertising_consent`: which profiles are forwarded, and the signal Google's consent fields
carry (docs/conversions.md, "Consent"; capi.md §6.4)."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.conversions.capture import MatchKeys, capture_keys, consent_signal
from leadloop.conversions.config import ConsentConfig, ConversionsConfig
from leadloop.conversions.fields import advertising_consent
from leadloop.identity.model import Profile

NO_SIGNAL = "no advertising consent (trait ad_consent or context.consent.categoryPreferences.advertising is not true)"
WITHDRAWN = "advertising consent withdrawn"


def profile(**traits: Any) -> Profile:
    times = {name: 10.0 for name in traits}
    return Profile(
        id="p",
        workspace_id="w",
        traits=traits,
        trait_times=times,
        first_seen=1.0,
        last_seen=1.0,
        last_activity=1.0,
    )


def config(required: bool) -> ConversionsConfig:
    return ConversionsConfig(consent=ConsentConfig(required=required))


@pytest.mark.parametrize(
    ("required", "traits", "expected"),
    [
        (True, {}, (None, NO_SIGNAL)),
        (True, {"ad_consent": True}, (True, None)),
        (True, {"ad_consent": "denied"}, (False, WITHDRAWN)),
        # `required: false` forwards without a signal, and says nothing it does not know.
        (False, {}, (None, None)),
        (False, {"ad_consent": "granted"}, (True, None)),
        # A denial is not forwarded, `required` or not.
        (False, {"ad_consent": False}, (False, WITHDRAWN)),
        # A number 0 or 1 reads as the texts "0" and "1" do (a form or CSV import writes them).
        (False, {"ad_consent": 0}, (False, WITHDRAWN)),
        (True, {"ad_consent": 1}, (True, None)),
        (False, {"ad_consent": 2}, (None, None)),
        # And as a float, as a spreadsheet or pandas export writes a whole number (`0.0`):
        # read as no signal, a refusal was forwarded under `required: false`.
        (False, {"ad_consent": 0.0}, (False, WITHDRAWN)),
        (True, {"ad_consent": 1.0}, (True, None)),
        (False, {"ad_consent": 0.5}, (None, None)),
        (False, {"ad_consent": float("nan")}, (None, None)),
        # Not a consent value: no signal.
        (False, {"ad_consent": "maybe"}, (None, None)),
    ],
)
def test_signal_and_reason(
    required: bool, traits: dict[str, Any], expected: tuple[bool | None, str | None]
) -> None:
    assert advertising_consent(config(required), profile(**traits), MatchKeys()) == expected


@pytest.mark.parametrize("required", [True, False])
def test_the_latest_signal_wins(required: bool) -> None:
    # The trait was set at 10; an event's `context.consent` at 20 overrides it, and one at 5 not.
    later_denial = MatchKeys(consent=False, consent_at=20.0)
    earlier_denial = MatchKeys(consent=False, consent_at=5.0)
    given = profile(ad_consent=True)
    assert advertising_consent(config(required), given, later_denial) == (False, WITHDRAWN)
    assert advertising_consent(config(required), given, earlier_denial) == (True, None)
    later_grant = MatchKeys(consent=True, consent_at=20.0)
    refused = profile(ad_consent=False)
    assert advertising_consent(config(required), refused, later_grant) == (True, None)


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ("denied", (False, WITHDRAWN)),
        ("false", (False, WITHDRAWN)),
        (0, (False, WITHDRAWN)),
        ("granted", (True, None)),
        ("maybe", (None, None)),
    ],
)
def test_an_events_consent_reads_as_a_traits_does(
    stated: object, expected: tuple[bool | None, str | None]
) -> None:
    # Google Consent Mode writes "granted" / "denied", and a banner may send "false" or 0: under
    # `context.consent` only JSON booleans counted, so such a denial was no signal at all and,
    # with `required: false`, the person's conversions were forwarded.
    body = {"context": {"consent": {"ad_user_data": stated}}}
    paths = ("ad_user_data",)
    assert consent_signal(body, paths) is expected[0]
    keys = capture_keys(MatchKeys(), body, 20.0, consent_paths=paths)
    custom = ConversionsConfig(consent=ConsentConfig(context=paths, required=False))
    assert advertising_consent(custom, profile(), keys) == expected
