"""`JourneyFields`, the `journeys` section's schema, and `ParseContext`: what a journey may
refer to outside itself (scoring models and stages, webhooks, declared templates).
"""

from __future__ import annotations

from collections.abc import Mapping

from leadloop.playbook.fields import SCHEMA as PLAYBOOK_SCHEMA
from leadloop.playbook.fields import Fields
from leadloop.playbook.model import Playbook, PlaybookWarning
from leadloop.playbook.nodes import Scalar
from leadloop.policy.model import PolicyConfig

_COMMON = frozenset({"id", "type"})
_FILTER = frozenset({"event", "type", "where"})

# section -> (required keys, optional keys); docs/journeys.md documents every key (tested).
SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "journeys": (frozenset(), frozenset({"flows", "policy", "templates"})),
    "journeys[]": (
        frozenset({"id", "entry", "steps"}),
        frozenset({"name", "if", "goal", "reentry", "holdout", "conversion_window", "migrate"}),
    ),
    "entry": (frozenset(), _FILTER | {"stage", "score", "segment"}),
    "stage_move": (frozenset({"model"}), frozenset({"to", "from"})),
    "score_crossing": (frozenset({"model", "op", "value"}), frozenset()),
    "goal": (frozenset(), _FILTER | {"stage"}),
    "condition": (
        frozenset(),
        frozenset(
            {"trait", "score", "stage", "event", "engaged", "op", "value", "ignore_case"}
            | {"within", "where", "with", "not"}
        ),
    ),
    "step.send": (
        _COMMON,
        frozenset({"name", "channel", "channels", "template", "variants"})
        | {"next", "otherwise", "transactional", "selection", "channel_order"},
    ),
    # `weight` is required unless a bandit chooses (`steps._variants` says so at the field).
    "variants[]": (frozenset({"template"}), frozenset({"weight"})),
    "step.wait": (
        _COMMON,
        frozenset({"name", "duration", "until_time", "weekdays", "until_trait", "offset", "next"})
        | {"best_time"},
    ),
    "step.wait_for": (
        _COMMON | {"event", "timeout"},
        frozenset({"name", "event_type", "where", "message_of", "happened", "timed_out"}),
    ),
    "step.branch": (_COMMON, frozenset({"name", "cases", "if", "then", "else"})),
    "cases[]": (frozenset({"if"}), frozenset({"then"})),
    "step.split": (_COMMON | {"paths"}, frozenset({"name"})),
    "paths[]": (frozenset({"weight"}), frozenset({"name", "next"})),
    "step.update_profile": (
        _COMMON,
        frozenset({"name", "traits", "add_tags", "remove_tags", "stage", "model", "next"}),
    ),
    "step.webhook": (_COMMON | {"webhook"}, frozenset({"name", "next"})),
    "step.audience": (_COMMON, frozenset({"name", "add", "remove", "next"})),
    "step.exit": (_COMMON, frozenset({"name", "outcome", "reason"})),
    "policy": (
        frozenset(),
        frozenset({"caps", "quiet_hours", "default_timezone", "fallback", "channels", "consent"}),
    ),
    "caps[]": (frozenset({"max", "per"}), frozenset({"channel", "channels"})),
    "quiet_hours": (frozenset({"start", "end"}), frozenset({"channels"})),
}


class JourneyFields(Fields):
    """`Fields` checked against the journeys schema instead of the playbook's."""

    schema = SCHEMA

    def sub(self, key: str, section: str) -> JourneyFields | None:
        node = self.get(key)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return None
        return JourneyFields(node, self.at(key), section)

    def ref(self, key: str) -> str | None:
        """A step reference (None when absent or null: the journey ends there)."""
        return None if self.value(key) is None else self.name(key)


# `where[]` items are checked by the playbook's own schema (shared with scoring rules).
assert "where[]" in PLAYBOOK_SCHEMA


class ParseContext:
    """What a journey may refer to outside itself (None: not checked, e.g. a stored version)."""

    def __init__(
        self,
        playbook: Playbook | None,
        templates: Mapping[str, set[str]] | None,
        policy: PolicyConfig,
        audiences: frozenset[str] | None = None,
    ) -> None:
        self.playbook = playbook
        self.templates = templates
        self.policy = policy
        self.audiences = audiences
        """Ids under `channels.audiences`; an audience step naming another is a warning, not
        an error: playbooks applied before it was checked must still load."""
        self.warnings: list[PlaybookWarning] = []
