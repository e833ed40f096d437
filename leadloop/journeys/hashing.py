"""Stable hashing for journeys: ids and buckets fixed by their inputs, so that replaying the
log gives the same instance and message ids, the same holdout and the same split path."""

from __future__ import annotations

from leadloop.digest import sha256_hex
from leadloop.journeys.model import Journey


def _digest(*parts: str) -> str:
    return sha256_hex("\x1f".join(parts))


def stable_fraction(*parts: str) -> float:
    """A number in [0, 1) fixed by `parts`: the same profile always lands in the same bucket."""
    return int(_digest(*parts)[:13], 16) / float(1 << 52)


def in_holdout(journey: Journey, profile_id: str) -> bool:
    return (
        journey.holdout > 0 and stable_fraction("holdout", journey.id, profile_id) < journey.holdout
    )


def instance_id(workspace: str, journey_id: str, profile_id: str, entry_key: str) -> str:
    return "ji_" + _digest(workspace, journey_id, profile_id, entry_key)[:24]


def message_id(instance: str, step: str, visit: int) -> str:
    return "jm_" + _digest(instance, step, str(visit))[:24]
