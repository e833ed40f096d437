"""The `steps` of a journey, one parser per step type.

Each step comes back with its refs, every edge out of it with the key that names it, so that
`journeys.graph` can report a dangling reference at the key that wrote it.
"""

from __future__ import annotations

import math
from typing import Any

from leadloop.journeys.conditions import model_ref, parse_tests, stage_ref
from leadloop.journeys.fields import JourneyFields, ParseContext
from leadloop.journeys.model import (
    CHANNEL_ORDERS,
    OUTCOMES,
    SELECTIONS,
    STEP_TYPES,
    AudienceStep,
    BranchStep,
    Case,
    ExitStep,
    SendStep,
    SplitPath,
    SplitStep,
    Step,
    UpdateProfileStep,
    Variant,
    WaitForStep,
    WaitStep,
    WebhookStep,
)
from leadloop.journeys.policy import local_minutes
from leadloop.log.model import EVENT_TYPES
from leadloop.playbook.fields import Fields, fail, type_name
from leadloop.playbook.model import PlaybookWarning
from leadloop.playbook.nodes import Map, Node, Scalar, join, to_value
from leadloop.playbook.scoring import _filter as parse_filter
from leadloop.policy.model import CHANNELS
from leadloop.scoring.model import EventFilter

HOUR = 3600.0
DAY = 24 * HOUR
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

Refs = list[tuple[str, str | None]]
"""(key, step id) pairs: every edge out of a step, with the key that names it."""


def parse_step(node: Node, path: str, context: ParseContext) -> tuple[Step, Refs, JourneyFields]:
    if not isinstance(node, Map):
        fail(node, path, f"expected a mapping, got {type_name(node)}")
    kind_node = node.values.get("type")
    kind = kind_node.value if isinstance(kind_node, Scalar) else None
    if kind not in STEP_TYPES:
        where = kind_node or node
        fail(where, join(path, "type"), f"expected one of: {', '.join(STEP_TYPES)}, got {kind!r}")
    fields = JourneyFields(node, path, f"step.{kind}")
    step_id = fields.name("id")
    refs: Refs = []

    def ref(key: str) -> str | None:
        return _ref(fields, key, refs)

    step: Step
    if kind == "send":
        step = _send(fields, step_id, context, refs)
    elif kind == "wait":
        step = _wait(fields, step_id, refs)
    elif kind == "wait_for":
        timeout = fields.duration("timeout")
        if timeout <= 0:
            fields.fail("timeout", "must be longer than 0")
        step = WaitForStep(
            step_id,
            when=_step_filter(fields),
            timeout=timeout,
            happened=ref("happened"),
            timed_out=ref("timed_out"),
            message_of=fields.optional_text("message_of"),
        )
    elif kind == "branch":
        step = _branch(fields, step_id, context, refs)
    elif kind == "split":
        paths: list[SplitPath] = []
        for path_node, path_path in fields.items("paths"):
            path_fields = JourneyFields(path_node, path_path, "paths[]")
            weight = path_fields.number("weight")
            if weight <= 0:
                path_fields.fail("weight", "must be greater than 0")
            target = path_fields.ref("next")
            refs.append((f"paths[{len(paths)}].next", target))
            name = path_fields.text("name", f"path {len(paths) + 1}")
            paths.append(SplitPath(name, weight, target))
        if len(paths) < 2:
            fields.fail("paths", "a split needs at least two paths")
        _finite_total(fields, "paths", [p.weight for p in paths])
        step = SplitStep(step_id, tuple(paths))
    elif kind == "update_profile":
        step = _update(fields, step_id, context, refs)
    elif kind == "webhook":
        webhook = fields.name("webhook")
        if context.playbook is not None and context.playbook.webhook(webhook) is None:
            fields.fail("webhook", f"no webhook {webhook!r} under the top-level `webhooks`")
        step = WebhookStep(step_id, webhook, ref("next"))
    elif kind == "audience":
        if fields.has("add") == fields.has("remove"):
            fields.fail("add", "give exactly one of `add` and `remove`")
        action = "add" if fields.has("add") else "remove"
        audience = fields.name(action)
        if context.audiences is not None and audience not in context.audiences:
            mark = (fields.get(action) or fields.map).mark
            context.warnings.append(
                PlaybookWarning(
                    mark.file,
                    mark.line,
                    fields.at(action),
                    f"no audience {audience!r} under channels.audiences: each of its rows "
                    "will be a dead letter",
                )
            )
        step = AudienceStep(step_id, audience, action, ref("next"))  # type: ignore[arg-type]
    else:
        outcome = fields.text("outcome", "exited")
        if outcome not in OUTCOMES:
            fields.fail("outcome", f"expected one of {', '.join(OUTCOMES)}")
        step = ExitStep(step_id, outcome, fields.text("reason", ""))
    return step, refs, fields


def _send(fields: JourneyFields, step_id: str, context: ParseContext, refs: Refs) -> SendStep:
    if fields.has("channel") == fields.has("channels"):
        fields.fail("channel", "give exactly one of `channel` and `channels`")
    key = "channel" if fields.has("channel") else "channels"
    channels = fields.texts(key)
    if not channels:
        fields.fail(key, "name at least one channel")
    for channel in channels:
        if channel not in CHANNELS:
            fields.fail(key, f"unknown channel {channel!r} (expected: {', '.join(CHANNELS)})")
    if fields.has("template") == fields.has("variants"):
        fields.fail("variants" if fields.has("variants") else "template", _ONE_TEMPLATE)
    channel_order = fields.text("channel_order", "listed")
    if channel_order not in CHANNEL_ORDERS:
        fields.fail("channel_order", f"expected one of {', '.join(CHANNEL_ORDERS)}")
    if channel_order != "listed" and len(channels) < 2:
        fields.fail("channel_order", "an order needs at least two `channels` to put in order")
    selection = fields.text("selection", "weights")
    if selection not in SELECTIONS:
        fields.fail("selection", f"expected one of {', '.join(SELECTIONS)}")
    template, variants = "", _variants(fields, channels, context, weighted=selection == "weights")
    if not variants:
        template = fields.name("template")
        _declared(fields, "template", template, channels, context)
    if selection != "weights" and not variants:
        fields.fail("selection", "a selection chooses among `variants`; this step has one template")
    return SendStep(
        step_id,
        variants=variants,
        channels=channels,
        template=template,
        next=_ref(fields, "next", refs),
        otherwise=_ref(fields, "otherwise", refs) if fields.has("otherwise") else None,
        transactional=fields.boolean("transactional", False),
        selection=selection,
        channel_order=channel_order,
    )


_ONE_TEMPLATE = "give exactly one of `template` and `variants`"


def _variants(
    fields: JourneyFields, channels: tuple[str, ...], context: ParseContext, *, weighted: bool
) -> tuple[Variant, ...]:
    """A send step's variant set: templates with weights (like a split's paths), one chosen
    per profile by a stable hash; without `weighted` (a bandit chooses), two or more, without
    weights."""
    if not fields.has("variants"):
        return ()
    variants: list[Variant] = []
    for node, path in fields.items("variants"):
        item = JourneyFields(node, path, "variants[]")
        template = item.name("template")
        _declared(item, "template", template, channels, context)
        if any(v.template == template for v in variants):
            item.fail("template", f"template {template!r} is already a variant of this step")
        if weighted and not item.has("weight"):
            item.fail("weight", "missing required field")
        if not weighted and item.has("weight"):
            # Accepted and ignored, the split the weights ask for would silently not happen.
            item.fail("weight", "a weight is not used by `selection: thompson`; leave it out")
        weight = item.number("weight") if item.has("weight") else 1.0
        if weight <= 0:
            item.fail("weight", "must be greater than 0")
        variants.append(Variant(template, weight))
    if not variants:
        fields.fail("variants", "list at least one variant ({template, weight})")
    if not weighted and len(variants) < 2:
        fields.fail("variants", "a bandit needs at least two variants to learn between")
    _finite_total(fields, "variants", [v.weight for v in variants])
    return tuple(variants)


def _finite_total(fields: JourneyFields, key: str, weights: list[float]) -> None:
    """Each weight is finite, but two near a float's maximum sum to inf, and every share of
    an infinite total is 0: all profiles would take the last path or variant."""
    if not math.isfinite(sum(weights)):
        fields.fail(key, "the weights are too large to add up; use smaller ones (e.g. 1 and 3)")


def _declared(
    fields: JourneyFields,
    key: str,
    template: str,
    channels: tuple[str, ...],
    context: ParseContext,
) -> None:
    """Fail at `key` when `template` is not declared for every channel the step may use."""
    if context.templates is None:
        return
    for channel in channels:
        if template not in context.templates.get(channel, set()):
            declared = ", ".join(sorted(context.templates.get(channel, set()))) or "none"
            fields.fail(key, f"unknown template {template!r} for {channel} (declared: {declared})")


def _wait(fields: JourneyFields, step_id: str, refs: Refs) -> WaitStep:
    kinds = [k for k in ("duration", "until_time", "until_trait", "best_time") if fields.has(k)]
    if len(kinds) != 1:
        fields.fail("duration", "give exactly one of duration, until_time, until_trait, best_time")
    if fields.has("weekdays") and kinds[0] != "until_time":
        fields.fail("weekdays", "`weekdays` goes with `until_time`")
    if fields.has("offset") and kinds[0] != "until_trait":
        fields.fail("offset", "`offset` goes with `until_trait`")
    if kinds[0] == "best_time":
        window = fields.duration("best_time")
        if not HOUR <= window <= 7 * DAY:
            fields.fail("best_time", "the window to find the best hour in is 1h to 7d")
        return WaitStep(step_id, best_time=window, next=_ref(fields, "next", refs))
    if kinds[0] == "duration":
        return WaitStep(
            step_id, duration=fields.duration("duration"), next=_ref(fields, "next", refs)
        )
    if kinds[0] == "until_time":
        # As quiet hours read theirs: unquoted, YAML 1.1 reads 10:30 as the number 630.
        until_time = local_minutes(fields, "until_time")
        days = []
        for day in fields.texts("weekdays"):
            # A day's name or the start of it (`tue`, `tues`); `monkey` was read as Monday.
            name = day.strip().casefold()
            found = [
                i for i, full in enumerate(_DAY_NAMES) if len(name) >= 3 and full.startswith(name)
            ]
            if not found:
                fields.fail("weekdays", f"expected days like mon, tues or friday, got {day!r}")
            days.append(found[0])
        return WaitStep(
            step_id,
            until_time=until_time,
            weekdays=tuple(sorted(days)),
            next=_ref(fields, "next", refs),
        )
    offset = 0.0
    if fields.has("offset"):
        raw = fields.value("offset")
        negative = isinstance(raw, str) and raw.strip().startswith("-")
        if negative:
            probe = Scalar(str(raw).strip()[1:], None, (fields.get("offset") or fields.map).mark)
            values = dict(fields.map.values)
            values["offset"] = probe
            fields = JourneyFields(
                Map(values, fields.map.key_marks, fields.map.mark), fields.path, "step.wait"
            )
        offset = fields.duration("offset") * (-1 if negative else 1)
    return WaitStep(
        step_id,
        until_trait=fields.name("until_trait"),
        offset=offset,
        next=_ref(fields, "next", refs),
    )


def _branch(fields: JourneyFields, step_id: str, context: ParseContext, refs: Refs) -> BranchStep:
    cases: list[Case] = []
    if fields.has("cases"):
        if fields.has("if") or fields.has("then"):
            fields.fail("if", "give either `cases` or `if`/`then`, not both")
        for case_node, case_path in fields.items("cases"):
            case_fields = JourneyFields(case_node, case_path, "cases[]")
            tests = parse_tests(case_fields, "if", context)
            target = case_fields.ref("then")
            refs.append((f"cases[{len(cases)}].then", target))
            cases.append(Case(tests, target))
    else:
        if not fields.has("if"):
            fields.fail("if", "a branch needs `if` (with `then`) or `cases`")
        cases.append(Case(parse_tests(fields, "if", context), _ref(fields, "then", refs)))
    for case in cases:
        if not case.tests:
            fields.fail("cases" if fields.has("cases") else "if", "list at least one condition")
    return BranchStep(step_id, tuple(cases), _ref(fields, "else", refs))


def _ref(fields: JourneyFields, key: str, refs: Refs) -> str | None:
    target = fields.ref(key)
    refs.append((key, target))
    return target


def _update(
    fields: JourneyFields, step_id: str, context: ParseContext, refs: Refs
) -> UpdateProfileStep:
    traits: dict[str, Any] = {}
    node = fields.get("traits")
    if node is not None:
        if not isinstance(node, Map):
            fields.fail("traits", "expected a mapping of trait → value")
        traits = {key: to_value(value) for key, value in node.values.items()}
    stage = fields.optional_text("stage")
    model = fields.optional_text("model")
    if stage is not None:
        if model is None:
            model = _only_model(fields, context)
        else:
            model_ref(fields, context)
        if model is not None:
            stage_ref(fields, "stage", model, stage, context)
    elif model is not None:
        fields.fail("model", "`model` goes with `stage`")
    add, remove = fields.texts("add_tags"), fields.texts("remove_tags")
    if not (traits or add or remove or stage):
        fields.fail("traits", "an update_profile step changes at least one trait, tag or stage")
    return UpdateProfileStep(step_id, traits, add, remove, stage, model, _ref(fields, "next", refs))


def _only_model(fields: JourneyFields, context: ParseContext) -> str | None:
    """The scoring model a `stage` without `model` sets: the playbook's only one. None when
    rebuilding a stored version without its playbook (its definition was stored with the model
    filled in, `journeys.config`)."""
    if context.playbook is None:
        return None
    models = [m.id for m in context.playbook.models]
    if len(models) == 1:
        return models[0]
    if not models:
        fields.fail("stage", "the playbook has no scoring model whose stage this could set")
    fields.fail("model", f"name the scoring `model` whose stage to set ({', '.join(models)})")


def _step_filter(fields: JourneyFields) -> EventFilter:
    """A wait_for step's event filter: its `type` is the step's, so the event's is `event_type`."""
    types = fields.texts("event_type") or EVENT_TYPES
    for event_type in types:
        if event_type not in EVENT_TYPES:
            fields.fail(
                "event_type", f"unknown event type {event_type!r} ({', '.join(EVENT_TYPES)})"
            )
    where = parse_filter(_without(fields, "type")).where
    return EventFilter(types=types, names=fields.texts("event"), where=where)


def _without(fields: JourneyFields, key: str) -> Fields:
    values = {k: v for k, v in fields.map.values.items() if k != key}
    marks = {k: v for k, v in fields.map.key_marks.items() if k != key}
    probe = Fields.__new__(Fields)
    probe.map, probe.path = Map(values, marks, fields.map.mark), fields.path
    return probe
