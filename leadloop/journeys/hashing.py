"""Stable hashing for journeys: ids and buckets fixed by their inputs, so that replaying the
log gives the same instance and message ids, the same holdout, split path and send variant."""

from __future__ import annotations

from collections.abc import Sequence

from leadloop.digest import sha256_hex
from leadloop.journeys.model import Journey, Variant


def _digest(*parts: str) -> str:
    return sha256_hex("\x1f".join(parts))


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts`: the same profile always lands in the same bucket."""
    return int(_digest(*parts)[:13], 16) / float(1 << 52)


def weighted_choice(point: float, weights: Sequence[float]) -> int:
    """The index whose share of the total weight holds `point` (in [0, 1)): a split path or a
    send variant for a stable fraction."""
    total = sum(weights)
    running = 0.0
    for index, weight in enumerate(weights):
        running += weight / total
        if point < running:
            return index
    return len(weights) - 1


def choose_variant(
    variants: Sequence[Variant], journey_id: str, step_id: str, profile_id: str
) -> int:
    """Which variant of a send step a profile gets: by weight, and always the same one for the
    same journey, step and profile, so a replay, a retry or a deferred send re-decided later
    picks it again. A pure function of its inputs, so a smarter choice (a bandit reading
    engagement per variant) can take its place."""
    point = stable_fraction("variant", journey_id, step_id, profile_id)
    return weighted_choice(point, [variant.weight for variant in variants])


def in_holdout(journey: Journey, profile_id: str) -> bool:
    return (
        journey.holdout > 0 and stable_fraction("holdout", journey.id, profile_id) < journey.holdout
    )


def instance_id(workspace: str, journey_id: str, profile_id: str, entry_key: str) -> str:
    return "ji_" + _digest(workspace, journey_id, profile_id, entry_key)[:24]


def message_id(instance: str, step: str, visit: int) -> str:
    return "jm_" + _digest(instance, step, str(visit))[:24]
