"""Scoring values: the model a playbook declares, the state kept per profile, the decisions made.

A model has two sub-scores. *Fit* is recomputed from profile and account traits on every event,
so it always reflects the current traits. *Engagement* accumulates points from events and is the
only part that decays: a VP stays a VP after a quiet month. `total = fit + engagement`.

Engagement is stored as a `steady` part plus one `Fading` bucket per half-life, because points that
halve every N days can be summed per half-life and evaluated lazily at any instant; nothing has to
be rewritten on a timer for half-life decay. Step decay (−N after each window without activity) is
applied by `decide.decay_scores` at the exact instants it falls due.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec

from leadloop.identity.model import PROFILE_UPDATE_EVENT

Operator = Literal[
    "equals", "in", "matches", "starts_with", "contains", "exists", "gt", "gte", "lt", "lte"
]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
NUMERIC_OPERATORS: frozenset[str] = frozenset({"gt", "gte", "lt", "lte"})

TraitSource = Literal["profile", "account", "any"]
TRAIT_SOURCES: tuple[TraitSource, ...] = get_args(TraitSource)

# Fields computed from the event rather than read from its body (see `match.event_field`).
VIRTUAL_FIELDS = ("page.path", "page.url", "page.query.<name>")

DEFAULT_ACTIVITY_TYPES = ("track", "page", "screen")
"""Event types that count as the person being active; identify/group/alias are often server
syncs and internal events are the engine's own, so neither resets the decay window."""


# --- configuration (built by the playbook loader) ---------------------------------------------

MATCH_CHARS = 1_000
"""A `matches` regex sees the first this many characters of a value: the value is the
sender's, and the loader's pattern rules (`playbook.regex`) leave matches that are at most
polynomial in its length. A page URL's path and a title fit well within it."""


@dataclass(frozen=True, slots=True)
class Predicate:
    op: Operator
    value: Any = None
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = None
    """Compiled once at load for `matches`, so a bad regex is a load error, not a runtime one."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A test on one field of an event: a dotted body path (`properties.plan`) or a virtual field."""

    field: str
    test: Predicate


@dataclass(frozen=True, slots=True)
class FitRule:
    id: str
    fields: tuple[str, ...]
    """Alternatives tried in order (`company_size`, then `employees`); the first present is tested."""
    source: TraitSource
    test: Predicate
    points: float


@dataclass(frozen=True, slots=True)
class Cap:
    points: float
    per: float | None = None
    """Rolling window in seconds; None caps over the profile's whole history."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    types: tuple[str, ...] = ()
    """Empty means every type except `internal`."""
    names: tuple[str, ...] = ()
    where: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class EngagementRule:
    id: str
    when: EventFilter
    points: float
    once: bool = False
    cap: Cap | None = None
    half_life: float | None = None
    """Seconds; None inherits the model's, 0 means the points never fade."""


@dataclass(frozen=True, slots=True)
class StageRule:
    """Sets the stage from an event, e.g. a CRM webhook carrying `properties.stage`."""

    id: str
    when: EventFilter
    stage: str | None = None
    stage_field: str | None = None


@dataclass(frozen=True, slots=True)
class EmitAction:
    event: str


@dataclass(frozen=True, slots=True)
class WebhookAction:
    webhook: str
    url: str
    enabled: bool
    """False when the url or secret is unset; the loader reports a warning instead of failing."""


Action = EmitAction | WebhookAction


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    at: float | None = None
    """Total score that promotes a profile to this stage; None for stages set only by events."""
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class StepDecay:
    points: float
    every: float


@dataclass(frozen=True, slots=True)
class Decay:
    step: StepDecay | None = None
    floor: float = 0.0
    """Step decay never takes engagement below this."""
    half_life: float | None = None
    activity_types: tuple[str, ...] = DEFAULT_ACTIVITY_TYPES


@dataclass(frozen=True, slots=True)
class SessionLimit:
    max_points: float
    timeout: float = 1800.0
    """A session ends after this many seconds without activity, unless the event names one."""


FeatureKind = Literal["category", "number"]
FEATURE_KINDS: tuple[FeatureKind, ...] = get_args(FeatureKind)
ScorePart = Literal["fit", "engagement", "total"]
SCORE_PARTS: tuple[ScorePart, ...] = get_args(ScorePart)


@dataclass(frozen=True, slots=True)
class TraitFeature:
    id: str
    fields: tuple[str, ...]
    """Alternatives tried in order, as a fit rule's."""
    source: TraitSource
    kind: FeatureKind


@dataclass(frozen=True, slots=True)
class CountFeature:
    id: str
    when: EventFilter
    within: float | None = None
    """Counts only the events this many seconds before the moment observed; None: all of them."""


@dataclass(frozen=True, slots=True)
class ScoreFeature:
    id: str
    part: ScorePart


Feature = TraitFeature | CountFeature | ScoreFeature


MAX_FEATURES = 24
"""A predictive model learns from at most this many features: each is one line of a lead's
explanation, and a category feature can take up to 52 columns of the training matrix (one row
per profile, up to 200,000 of them)."""


@dataclass(frozen=True, slots=True)
class PredictSpec:
    """A predictive model beside the rules: P(outcome) learned from the log (`scoring.predictive`)."""

    outcome: EventFilter
    features: tuple[Feature, ...]
    digest: str
    """Of the `predict` section: a trained model is served only while its spec is unchanged."""
    min_conversions: int = 100
    """Below this many profiles with the outcome, nothing is trained and the rules score alone
    is served: a model fitted on a handful of conversions ranks noise."""
    post_outcome: tuple[str, ...] = ()
    """Traits set only after the outcome (a sales rep's tags, a deal's quality): refused as
    features, because a model trained on them learns the outcome, not who will reach it."""


@dataclass(frozen=True, slots=True)
class ScoringModel:
    id: str
    version: str
    """Digest of the model's playbook text, and of the values of the `${VAR}`s it uses: ledger
    entries name the rules they were made under."""
    stages: tuple[Stage, ...]
    name: str = ""
    fit: tuple[FitRule, ...] = ()
    engagement: tuple[EngagementRule, ...] = ()
    stage_rules: tuple[StageRule, ...] = ()
    decay: Decay = Decay()
    cap: Cap | None = None
    """Caps the positive engagement points of all rules together."""
    session: SessionLimit | None = None
    predict: PredictSpec | None = None
    """Not part of `version`: training a model or changing its features rescores nobody."""
    variables: tuple[str, ...] = ()
    """The `${VAR}`s whose values `version` counts, by name (never their values)."""

    def rank(self, stage: str) -> int:
        """The stage's place in `stages` (-1: not one of them). Case-insensitive like `stage`:
        a state may hold a spelling the playbook has since changed the case of."""
        for index, candidate in enumerate(self.stages):
            if same_stage(candidate.name, stage):
                return index
        return -1

    def stage(self, name: str) -> Stage | None:
        for candidate in self.stages:
            if same_stage(candidate.name, name):
                return candidate
        return None


def same_stage(a: str, b: str) -> bool:
    """Stage names ignore case everywhere a user writes one (playbook, CLI, journeys): the
    playbook refuses two stages of a model that differ only in case."""
    return a.casefold() == b.casefold()


# --- state (persisted per profile per model) --------------------------------------------------
# `omit_defaults`: a stored state leaves out its unset fields (a new lead's row is a third the
# size); rows written before decode the same. `gc=False` here and on the decisions: these hold
# no reference cycles, and several are made per event, so the cyclic collector skips them.


class Award(msgspec.Struct, frozen=True, array_like=True, gc=False):
    at: float
    points: float


class RuleUsage(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    count: int = 0
    """Times the rule matched, capped or not: `once` rules look only at this."""
    total: float = 0.0
    """Positive points awarded over the whole history (for caps without a period)."""
    recent: tuple[Award, ...] = ()
    """Awards still inside the rule's cap window."""


class Fading(msgspec.Struct, frozen=True, array_like=True, gc=False):
    half_life: float
    value: float
    as_of: float


class ParkedSession(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A named session another one interrupted, with what it added so far."""

    key: str
    last: float
    points: float


MAX_PARKED_SESSIONS = 8
"""Interrupted sessions remembered at once (a person's devices and tabs)."""


class ScoreState(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    model_id: str
    model_version: str
    stage: str
    as_of: float | None = None
    """Latest instant applied; event times earlier than this are clamped to it."""
    fit: float = 0.0
    fit_rules: tuple[str, ...] = ()
    steady: float = 0.0
    fading: tuple[Fading, ...] = ()
    usage: dict[str, RuleUsage] = msgspec.field(default_factory=dict)
    model_recent: tuple[Award, ...] = ()
    model_total: float = 0.0
    session_key: str | None = None
    session_last: float | None = None
    session_points: float = 0.0
    parked_sessions: tuple[ParkedSession, ...] = ()
    """Named sessions interrupted by another within the session timeout: resumed, one goes on
    from the points it had added, so two devices alternating cannot pass the limit."""
    last_activity: float | None = None
    decay_steps: int = 0
    """Step deductions applied since `last_activity`; the next is due at
    `last_activity + (decay_steps + 1) * every`."""


def engagement_at(state: ScoreState, at: float) -> float:
    value = state.steady
    for bucket in state.fading:
        value += bucket.value * 0.5 ** (max(0.0, at - bucket.as_of) / bucket.half_life)
    return value


def total_at(state: ScoreState, at: float) -> float:
    return state.fit + engagement_at(state, at)


def initial_state(model: ScoringModel) -> ScoreState:
    return ScoreState(model_id=model.id, model_version=model.version, stage=model.stages[0].name)


# --- decisions ---------------------------------------------------------------------------------
# Structs rather than frozen dataclasses: several are built per event, and a frozen dataclass
# costs about ten times as much to construct.

ChangeKind = Literal["fit", "engagement", "decay", "stage", "merge", "rescore"]


class ScoreChange(msgspec.Struct, frozen=True, gc=False):
    """One ledger line: why a sub-score moved (or, with 0 points, why an award was held back)."""

    model_id: str
    model_version: str
    at: float
    kind: ChangeKind
    points: float
    reason: str
    fit: float
    engagement: float
    total: float
    rule_id: str | None = None
    message_id: str | None = None


JOURNEY_UPDATE_EVENT = PROFILE_UPDATE_EVENT
"""The internal event a journey's `update_profile` step emits; with `properties.model` and
`properties.stage` it sets that model's stage (`stages.stage_from_journey`). Its traits are on
the profile by the time it is scored (`identity.decide.apply_engine_event`)."""


class StageChange(msgspec.Struct, frozen=True, gc=False):
    model_id: str
    at: float
    from_stage: str
    to_stage: str
    cause: Literal["threshold", "event", "journey", "merge"]
    total: float
    message_id: str | None = None
    rule_id: str | None = None


class EmitEvent(msgspec.Struct, frozen=True):
    """Append an internal event to the log; `key` is its message id, stable across replays."""

    key: str
    name: str
    properties: dict[str, Any]


class SendWebhook(msgspec.Struct, frozen=True):
    """Queue a signed webhook in the outbox. The secret is not carried: the dispatcher looks it up
    by `webhook_id` in the applied playbook, so secrets never land in database rows."""

    key: str
    webhook_id: str
    url: str
    payload: dict[str, Any]


Effect = EmitEvent | SendWebhook


class ScoreDecision(msgspec.Struct, frozen=True, gc=False):
    state: ScoreState
    changes: tuple[ScoreChange, ...] = ()
    stage_changes: tuple[StageChange, ...] = ()
    effects: tuple[Effect, ...] = ()
    decay_due_at: float | None = None
    """When the shell should call `decay_scores` next; None when no step can lower the score."""


class Scores(msgspec.Struct, frozen=True):
    """A state read at an instant, rounded for display."""

    model_id: str
    fit: float
    engagement: float
    total: float
    stage: str


def scores_at(state: ScoreState, at: float) -> Scores:
    engagement = engagement_at(state, at)
    return Scores(
        model_id=state.model_id,
        fit=round(state.fit, 2),
        engagement=round(engagement, 2),
        total=round(state.fit + engagement, 2),
        stage=state.stage,
    )
