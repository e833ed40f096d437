"""The `scoring` section of a playbook, validated into `leadloop.scoring.model` values."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from leadloop.log.model import EVENT_TYPES
from leadloop.playbook.diff import digest_with_values
from leadloop.playbook.fields import Fields, fail
from leadloop.playbook.model import WebhookEndpoint
from leadloop.playbook.nodes import Node, Scalar, env_names, to_raw, to_value
from leadloop.playbook.regex import pattern_problem
from leadloop.scoring.model import (
    DEFAULT_ACTIVITY_TYPES,
    FEATURE_KINDS,
    MAX_FEATURES,
    NUMERIC_OPERATORS,
    OPERATORS,
    SCORE_PARTS,
    TRAIT_SOURCES,
    Action,
    Cap,
    Condition,
    CountFeature,
    Decay,
    EmitAction,
    EngagementRule,
    EventFilter,
    Feature,
    FitRule,
    Operator,
    Predicate,
    PredictSpec,
    ScoreFeature,
    ScorePart,
    ScoringModel,
    SessionLimit,
    Stage,
    StageRule,
    StepDecay,
    TraitFeature,
    WebhookAction,
)

# Registers a rule id, failing on a duplicate within the model.
_Unique = Callable[[Fields], str]


def parse_scoring(
    fields: Fields | None, webhooks: Mapping[str, WebhookEndpoint]
) -> tuple[ScoringModel, ...]:
    if fields is None:
        return ()
    models: list[ScoringModel] = []
    seen: set[str] = set()
    for node, path in fields.items("models"):
        model = _model(node, path, webhooks)
        if model.id in seen:
            fail(node, f"{path}.id", f"duplicate model id {model.id!r}")
        seen.add(model.id)
        models.append(model)
    return tuple(models)


def _model(node: Node, path: str, webhooks: Mapping[str, WebhookEndpoint]) -> ScoringModel:
    fields = Fields(node, path, "scoring.models[]")
    rule_ids: set[str] = set()

    def unique(rule_fields: Fields) -> str:
        rule_id = rule_fields.name("id")
        if rule_id in rule_ids:
            rule_fields.fail("id", f"duplicate rule id {rule_id!r} in this model")
        rule_ids.add(rule_id)
        return rule_id

    fit = tuple(_fit(Fields(n, p, "fit[]"), unique) for n, p in fields.items("fit"))
    engagement = tuple(
        _engagement(Fields(n, p, "engagement[]"), unique) for n, p in fields.items("engagement")
    )
    stages = _stages(fields, webhooks)
    stage_rules = tuple(
        _stage_rule(Fields(n, p, "stage_rules[]"), unique, stages)
        for n, p in fields.items("stage_rules")
    )
    session_fields = fields.child("session", "session")
    session = None
    if session_fields is not None:
        timeout = session_fields.optional_duration("timeout")
        if timeout == 0:
            # It read as "not set", so sessions silently lasted the default 30 minutes.
            session_fields.fail("timeout", "must be longer than 0")
        session = SessionLimit(
            max_points=_positive(session_fields, "max_points"),
            timeout=1800.0 if timeout is None else timeout,
        )
    raw, value = to_raw(node), to_value(node)
    predict_fields = fields.child("predict", "predict")
    return ScoringModel(
        id=fields.name("id"),
        version=model_version(raw, value),
        variables=tuple(sorted(env_names(_scored(raw)))),
        name=fields.text("name", ""),
        stages=stages,
        fit=fit,
        engagement=engagement,
        stage_rules=stage_rules,
        decay=_decay(fields.child("decay", "decay")),
        cap=_cap(fields.child("cap", "cap")),
        session=session,
        predict=None
        if predict_fields is None
        else _predict(predict_fields, raw, value, _rule_traits(fit, engagement)),
    )


def model_version(model_raw: Any, model_value: Any) -> str:
    """`model_raw`, `model_value`: the model's mapping before and after `${ENV}` substitution."""
    return digest_with_values(_scored(model_raw), _scored(model_value))


def _scored(model: Any) -> Any:
    # Without `predict`: changing what a model learns from must not rescore every profile.
    return {k: v for k, v in model.items() if k != "predict"}


RuleTraits = Mapping[ScorePart, tuple[tuple[str, str], ...]]
"""Per part of the rules' score, the (rule id, trait path) its rules read."""


def _rule_traits(fit: tuple[FitRule, ...], engagement: tuple[EngagementRule, ...]) -> RuleTraits:
    fit_reads = tuple((rule.id, name) for rule in fit for name in rule.fields)
    engagement_reads = tuple(
        (rule.id, trait)
        for rule in engagement
        for condition in rule.when.where
        if (trait := _trait_path(condition.field)) is not None
    )
    return {
        "fit": fit_reads,
        "engagement": engagement_reads,
        "total": fit_reads + engagement_reads,
    }


def _trait_path(field: str) -> str | None:
    """The trait an event field reads (`traits.deal.size`: `deal.size`), if it reads one."""
    for head in ("traits.", "context.traits."):
        if field.casefold().startswith(head):
            return field[len(head) :]
    return None


SCORE_KEYS = ("fit", "engagement", "decay", "cap", "session")
"""What a model's points depend on (not its stages, which move no point)."""


def _predict(
    fields: Fields, model_raw: Any, model_value: Any, rule_traits: RuleTraits
) -> PredictSpec:
    """`model_raw`, `model_value`: the whole model's before and after `${ENV}` substitution,
    whose points a `score` feature reads (`rule_traits`: the traits its rules read)."""
    post_outcome = fields.texts("post_outcome")
    banned = {name.casefold() for name in post_outcome}
    features: list[Feature] = []
    ids: set[str] = set()
    for node, path in fields.items("features"):
        feature = _feature(Fields(node, path, "features[]"), banned, rule_traits)
        if feature.id in ids:
            fail(node, path, f"duplicate feature id {feature.id!r} (give one an `id`)")
        ids.add(feature.id)
        features.append(feature)
    if not features:
        fields.fail("features", "list at least one feature to learn from")
    if len(features) > MAX_FEATURES:
        fields.fail(
            "features",
            f"at most {MAX_FEATURES} features (got {len(features)}): keep the ones that say "
            "most about who converts",
        )
    minimum = fields.number("min_conversions", 100)
    if minimum < 1 or minimum != int(minimum):
        fields.fail("min_conversions", "must be a whole number of at least 1")
    outcome_fields = fields.child("outcome", "outcome")
    if outcome_fields is None:
        fields.fail("outcome", "give the event that marks a conversion, e.g. {event: Deal Won}")
    outcome = _filter(outcome_fields)
    if not (outcome.names or outcome.where):
        # Types alone would make every page view a conversion.
        outcome_fields.fail("event", "name the outcome event (or give `where` conditions)")
    reads_score = any(isinstance(feature, ScoreFeature) for feature in features)
    return PredictSpec(
        outcome=outcome,
        features=tuple(features),
        digest=_spec_digest(model_raw, model_value, reads_score),
        min_conversions=int(minimum),
        post_outcome=post_outcome,
    )


def _spec_digest(model_raw: Any, model_value: Any, reads_score: bool) -> str:
    def section(model: Any) -> Any:
        # A model learned from the rules' score is stale once the rules change: its weights
        # fit the old points' scale.
        if reads_score:
            return {"predict": model["predict"], **{k: model.get(k) for k in SCORE_KEYS}}
        return model["predict"]

    # An outcome or a feature set through `${ENV}` is another model once the variable changes.
    return digest_with_values(section(model_raw), section(model_value))


def _feature(fields: Fields, banned: set[str], rule_traits: RuleTraits) -> Feature:
    given = [key for key in ("trait", "count", "score") if fields.has(key)]
    if len(given) != 1:
        fields.fail("trait", "give exactly one of `trait`, `count` and `score`")
    kind = given[0]
    if kind == "trait":
        names = fields.texts("trait")
        if not names:
            fields.fail("trait", "needs at least one trait name")
        for name in names:
            _refuse_post_outcome(fields, "trait", repr(name), name, banned)
        source = fields.text("source", "any")
        if source not in TRAIT_SOURCES:
            fields.fail("source", f"expected one of: {', '.join(TRAIT_SOURCES)}")
        feature_kind = fields.text("kind", "category")
        if feature_kind not in FEATURE_KINDS:
            fields.fail("kind", f"expected one of: {', '.join(FEATURE_KINDS)}")
        return TraitFeature(
            id=_feature_id(fields, names[0]),
            fields=names,
            source=source,  # narrowed by the check above
            kind=feature_kind,  # narrowed by the check above
        )
    for key in ("kind", "source") if kind != "trait" else ():
        if fields.has(key):
            fields.fail(key, f"only a `trait` feature takes `{key}`")
    if kind == "score":
        part = fields.text("score")
        if part not in SCORE_PARTS:
            fields.fail("score", f"expected one of: {', '.join(SCORE_PARTS)}")
        if fields.has("within"):
            fields.fail("within", "only a `count` feature takes `within`")
        for rule_id, trait in rule_traits[part]:
            # The score carries what its rules read.
            _refuse_post_outcome(fields, "score", f"the score's rule {rule_id!r}", trait, banned)
        return ScoreFeature(id=_feature_id(fields, f"score.{part}"), part=part)
    within = fields.optional_duration("within")
    if within == 0:
        fields.fail("within", "must be longer than 0 (leave it out to count all events)")
    count = fields.child("count", "count")
    if count is None:
        fields.fail("count", "give the events to count, e.g. {type: page}")
    if not fields.has("id"):
        fields.fail("id", "missing: a `count` feature needs an `id` to be named by")
    for node, path in count.items("where"):
        condition = Fields(node, path, "where[]")
        field = condition.name("field")
        read = _trait_path(field)
        if read is not None:
            # Counting the calls that set a post-outcome trait learns it all the same.
            _refuse_post_outcome(condition, "field", repr(field), read, banned)
    return CountFeature(id=fields.name("id"), when=_filter(count), within=within)


def _refuse_post_outcome(fields: Fields, key: str, what: str, trait: str, banned: set[str]) -> None:
    # A dot reads into an object: `deal.size` is part of a post-outcome `deal`.
    parts = trait.casefold().split(".")
    prefixes = (".".join(parts[:n]) for n in range(1, len(parts) + 1))
    listed = next((prefix for prefix in prefixes if prefix in banned), None)
    if listed is not None:
        fields.fail(
            key,
            f"{what} reads {listed!r}, listed in `post_outcome`: it is set after a lead "
            "converts, so a model learning from it would learn the outcome itself",
        )


def _feature_id(fields: Fields, default: str) -> str:
    # Printed in `explain` and the API as a count feature's `id` is: held to the same rules.
    return fields.name("id") if fields.has("id") else default


def _positive(fields: Fields, key: str) -> float:
    value = fields.number(key)
    if value <= 0:
        fields.fail(key, "must be greater than 0")
    return value


def _predicate(fields: Fields, *, fold: bool = False) -> Predicate:
    """`fold`: compare strings ignoring case whatever `ignore_case` says (stage names)."""
    op = fields.text("op")
    if op not in OPERATORS:
        fields.fail("op", f"unknown operator {op!r} (expected one of: {', '.join(OPERATORS)})")
    operator: Operator = op  # narrowed by the check above
    ignore_case = fields.boolean("ignore_case", False) or fold
    node = fields.get("value")
    value: Any = None
    if node is not None and not isinstance(node, Scalar):
        if operator != "in":
            fields.fail("value", "expected a single value")
        value = [_scalar(item, path) for item, path in fields.items("value")]
    elif node is not None:
        value = node.value
    if operator == "exists":
        return Predicate(operator, fields.boolean("value", True))
    if value is None:
        fields.fail("value", f"operator {operator!r} needs a value")
    if isinstance(value, date | bytes):  # a datetime is a date
        # Unquoted, YAML reads 2024-06-01 as a date (and `!!binary` as bytes), which no event or
        # trait value, JSON, equals: the condition could never hold.
        fields.fail(
            "value",
            f"expected a string, number or boolean, got {type(value).__name__} "
            "(quote a date: '2024-06-01')",
        )
    if operator == "in" and not isinstance(value, list):
        fields.fail("value", "operator 'in' needs a list")
    if operator in NUMERIC_OPERATORS and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        fields.fail("value", f"operator {operator!r} needs a finite number")
    if operator in ("matches", "starts_with", "contains") and not isinstance(value, str):
        fields.fail("value", f"operator {operator!r} needs a string")
    pattern = None
    if operator == "matches":
        try:
            pattern = re.compile(value, re.IGNORECASE if ignore_case else 0)
        except re.error as error:
            fields.fail("value", f"bad regex: {error}")
        problem = pattern_problem(value, pattern.flags)
        if problem is not None:
            fields.fail("value", f"regex refused: {problem}")
    return Predicate(operator, value, ignore_case, pattern)


def _scalar(node: Node, path: str) -> str | int | float | bool:
    if not isinstance(node, Scalar) or not isinstance(node.value, str | int | float | bool):
        fail(node, path, "expected a string, number or boolean")
    return node.value


def _fit(fields: Fields, unique: _Unique) -> FitRule:
    rule_id = unique(fields)
    names = fields.texts("field")
    if not names:
        fields.fail("field", "needs at least one trait name")
    source = fields.text("source", "any")
    if source not in TRAIT_SOURCES:
        fields.fail("source", f"expected one of: {', '.join(TRAIT_SOURCES)}")
    return FitRule(
        id=rule_id,
        fields=names,
        source=source,  # narrowed by the check above
        test=_predicate(fields),
        points=fields.number("points"),
    )


def _filter(fields: Fields) -> EventFilter:
    types = fields.texts("type")
    for event_type in types:
        if event_type not in EVENT_TYPES:
            fields.fail("type", f"unknown event type {event_type!r} ({', '.join(EVENT_TYPES)})")
    where = []
    for node, path in fields.items("where"):
        condition = Fields(node, path, "where[]")
        where.append(Condition(condition.name("field"), _predicate(condition)))
    return EventFilter(types=types, names=fields.texts("event"), where=tuple(where))


def _engagement(fields: Fields, unique: _Unique) -> EngagementRule:
    rule_id = unique(fields)
    return EngagementRule(
        id=rule_id,
        when=_filter(fields),
        points=fields.number("points"),
        once=fields.boolean("once", False),
        cap=_cap(fields.child("cap", "cap")),
        half_life=fields.optional_duration("half_life"),
    )


def _stage_rule(fields: Fields, unique: _Unique, stages: tuple[Stage, ...]) -> StageRule:
    rule_id = unique(fields)
    stage = fields.optional_text("stage")
    stage_field = fields.optional_text("stage_field")
    if (stage is None) == (stage_field is None):
        fields.fail("stage", "give exactly one of `stage` and `stage_field`")
    names = {candidate.name.casefold() for candidate in stages}
    if stage is not None and stage.casefold() not in names:
        fields.fail("stage", f"unknown stage {stage!r}")
    return StageRule(id=rule_id, when=_filter(fields), stage=stage, stage_field=stage_field)


def _stages(fields: Fields, webhooks: Mapping[str, WebhookEndpoint]) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    names: set[str] = set()
    threshold: float | None = None
    for node, path in fields.items("stages"):
        stage_fields = Fields(node, path, "stages[]")
        name = stage_fields.name("name")
        if name.casefold() in names:
            stage_fields.fail("name", f"duplicate stage {name!r}")
        names.add(name.casefold())
        at = stage_fields.optional_number("at")
        if at is not None:
            # Stages are listed lowest first; thresholds must follow that order.
            if threshold is not None and at <= threshold:
                stage_fields.fail(
                    "at", f"must be above the previous stage's threshold {threshold:g}"
                )
            threshold = at
        actions = tuple(
            _action(Fields(n, p, "actions[]"), webhooks) for n, p in stage_fields.items("actions")
        )
        stages.append(Stage(name=name, at=at, actions=actions))
    if not stages:
        fields.fail("stages", "list at least one stage (the first is where profiles start)")
    return tuple(stages)


def _action(fields: Fields, webhooks: Mapping[str, WebhookEndpoint]) -> Action:
    if fields.has("emit") == fields.has("webhook"):
        fields.fail("emit", "give exactly one of `emit` and `webhook`")
    if fields.has("emit"):
        return EmitAction(event=fields.name("emit"))
    webhook_id = fields.name("webhook")
    hook = webhooks.get(webhook_id)
    if hook is None:
        fields.fail("webhook", f"no webhook {webhook_id!r} under the top-level `webhooks`")
    return WebhookAction(webhook=hook.id, url=hook.url, enabled=hook.enabled)


def _cap(fields: Fields | None) -> Cap | None:
    if fields is None:
        return None
    per = fields.optional_duration("per")
    if per == 0:
        # A window of no length holds no award: the cap would never hold anything back.
        fields.fail("per", "must be longer than 0 (leave it out to cap the whole history)")
    return Cap(points=_positive(fields, "points"), per=per)


MIN_DECAY_EVERY = 60.0
"""The shortest step decay window, in seconds."""


def _decay(fields: Fields | None) -> Decay:
    if fields is None:
        return Decay()
    step = None
    step_fields = fields.child("step", "decay.step")
    if step_fields is not None:
        every = step_fields.duration("every")
        # Step n is due at `last_activity + n * every`: a window of a fraction of a second can
        # round to the instant of the step before it, whose timer (the same id) is then dropped
        # as a duplicate and decay stops. A minute is far below any real window.
        if every < MIN_DECAY_EVERY:
            step_fields.fail("every", f"must be at least 1 minute, got {every:g} seconds")
        step = StepDecay(points=_positive(step_fields, "points"), every=every)
    half_life = fields.optional_duration("half_life")
    if half_life == 0:
        half_life = None
    activity = fields.texts("activity") if fields.has("activity") else DEFAULT_ACTIVITY_TYPES
    for event_type in activity:
        if event_type not in EVENT_TYPES:
            fields.fail("activity", f"unknown event type {event_type!r}")
    return Decay(
        step=step,
        floor=fields.number("floor", 0.0),
        half_life=half_life,
        activity_types=activity,
    )
