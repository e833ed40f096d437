"""What a predictive model sees of one profile: its features at one moment, and whether it
reached the outcome.

Training observes a profile that converted just before its first outcome event, and any other
profile at the moment of training; serving observes a profile now. Both go through `observe`,
so a model is served the features it learned from, and nothing a profile did at or after its
conversion (a `Deal Won`, the traits the sales team set on it) leaks into what it learned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from leadloop.log.model import Event
from leadloop.scoring.decide import rescore
from leadloop.scoring.match import matches_filter, to_number, trait_value
from leadloop.scoring.model import (
    CountFeature,
    Feature,
    PredictSpec,
    ScoreFeature,
    ScoringModel,
    TraitFeature,
    engagement_at,
)
from leadloop.scoring.replay import AccountTraits, with_context

Value = str | float | None
"""A category's level, a number, or None when the profile has no value for the feature."""

CATEGORY_CHARS = 100
"""A category level keeps this many characters: a free-text trait is not a category, and a
long value must not grow the stored model."""


@dataclass(frozen=True, slots=True)
class Observation:
    values: tuple[Value, ...]
    """One per feature of the spec, in its order."""
    rules_total: float
    """The rules' score at the same moment: what the model is measured against."""
    at: float
    converted_at: float | None
    """When the profile first reached the outcome; None when it has not."""
    arrived: int
    """Log position of the profile's first event: orders profiles by when they arrived."""


def observe(
    profile_id: str,
    events: list[Event],
    model: ScoringModel,
    spec: PredictSpec,
    now: float,
    accounts: AccountTraits | None = None,
    *,
    before_outcome: bool,
) -> Observation | None:
    """The profile's features as of its first outcome event (`before_outcome`, for training:
    the earliest in time, seeing only what came before it in both time and the log, and no
    later than `now`) or as of
    `now` over its whole history (for serving). None when nothing precedes the
    outcome: a profile whose first event is its conversion says nothing about who converts."""
    outcomes = [i for i, e in enumerate(events) if matches_filter(e, spec.outcome)]
    converted_at = min((events[i].timestamp for i in outcomes), default=None)
    seen, at = events, now
    if before_outcome and converted_at is not None:
        # Before it in the log and in time: a `Deal Won` sent late with the time the deal
        # closed follows visits made after it, and an event logged after the outcome may
        # carry what the outcome set (a backdated CRM update). An outcome dated after `now`
        # (a mistyped year) is observed at `now`: later, decay would have emptied the
        # profile's engagement and windows would count nothing.
        at = min(converted_at, now)
        seen = [e for e in events[: outcomes[0]] if e.timestamp <= at]
    if not seen:
        return None
    contexts = list(with_context(profile_id, seen, accounts))
    state = rescore(contexts, model, at).state
    engagement = engagement_at(state, at)
    _, profile, account = contexts[-1]
    parts = {"fit": state.fit, "engagement": engagement, "total": state.fit + engagement}
    values = tuple(_value(f, seen, profile.traits, account, parts, at) for f in spec.features)
    return Observation(
        values=values,
        rules_total=parts["total"],
        at=at,
        converted_at=converted_at,
        arrived=events[0].seq,
    )


def _value(
    feature: Feature,
    events: list[Event],
    traits: Mapping[str, Any],
    account: Mapping[str, Any],
    parts: Mapping[str, float],
    at: float,
) -> Value:
    if isinstance(feature, TraitFeature):
        found = trait_value(feature.fields, feature.source, traits, account)
        if found is None:
            return None
        if feature.kind == "number":
            number = None if isinstance(found[1], bool) else to_number(found[1])
            # Digits past a double's range ("999…", 400 of them) read as infinity, which no
            # log or step can hold: such a value says nothing, as a missing one.
            return number if number is not None and math.isfinite(number) else None
        return category(found[1])
    if isinstance(feature, CountFeature):
        since = None if feature.within is None else at - feature.within
        return float(
            sum(
                1
                for event in events
                if (since is None or event.timestamp >= since)
                and matches_filter(event, feature.when)
            )
        )
    if isinstance(feature, ScoreFeature):
        return parts[feature.part]
    assert_never(feature)


def category(value: Any) -> str | None:
    """A trait value as a category level: case and surrounding spaces do not make a new level
    (forms send `Google` and `google `), and lists or objects are not categories."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float):
        # Every digit: a code sent as a number is the level it is as text, and two codes
        # differing past the sixth digit are two levels.
        return repr(value)[:CATEGORY_CHARS]
    if isinstance(value, str):
        text = value.strip().casefold()[:CATEGORY_CHARS]
        return text or None
    return None
