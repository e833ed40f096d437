"""The playbook's `journeys` section, validated into `journeys.model` values.

Every error names the file, line and dotted field (a `PlaybookError`), like the scoring section.
Besides the shape of each key, the graph is checked: every step reference exists (no dangling
branch), every step is reachable from the first, no cycle runs without a wait, and every template
a send step names is declared for its channel.

The section is either a list of journeys or a mapping with `flows` (the journeys), `policy` (the
contact-pressure policy) and `templates` (the names send steps may use, per channel).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from leadloop.journeys.model import (
    ENGAGEMENTS,
    OUTCOMES,
    STEP_TYPES,
    TEST_KINDS,
    AudienceStep,
    BranchStep,
    Case,
    EventTrigger,
    ExitStep,
    Goal,
    Journey,
    JourneySet,
    Reentry,
    ScoreTrigger,
    SegmentTrigger,
    SendStep,
    SplitPath,
    SplitStep,
    StageTrigger,
    Step,
    Test,
    Trigger,
    UpdateProfileStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
)
from leadloop.log.model import EVENT_TYPES
from leadloop.playbook.diff import digest_of
from leadloop.playbook.fields import SCHEMA as PLAYBOOK_SCHEMA
from leadloop.playbook.fields import Fields, fail, items, type_name
from leadloop.playbook.model import Playbook
from leadloop.playbook.nodes import Map, Mark, Node, Scalar, Seq, join, to_raw, to_value
from leadloop.playbook.scoring import _filter as parse_filter
from leadloop.playbook.scoring import _predicate as parse_predicate
from leadloop.policy.model import CHANNELS, DEFAULT_CONSENT, Cap, PolicyConfig, QuietHours
from leadloop.scoring.model import EventFilter, Predicate

_COMMON = frozenset({"id", "type"})
_FILTER = frozenset({"event", "type", "where"})

# section -> (required keys, optional keys); docs/journeys.md documents every key (tested).
SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "journeys": (frozenset(), frozenset({"flows", "policy", "templates"})),
    "journeys[]": (
        frozenset({"id", "entry", "steps"}),
        frozenset({"name", "if", "goal", "reentry", "holdout", "migrate"}),
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
        _COMMON | {"template"},
        frozenset({"name", "channel", "channels", "next", "otherwise", "transactional"}),
    ),
    "step.wait": (
        _COMMON,
        frozenset({"name", "duration", "until_time", "weekdays", "until_trait", "offset", "next"}),
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

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WAITING_TYPES = (WaitStep, WaitForStep)


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


def parse_journeys(
    playbook: Playbook, known_templates: Mapping[str, Iterable[str]] | None = None
) -> JourneySet:
    """Validate the playbook's `journeys` section; raises `PlaybookError` for the first problem."""
    node = playbook.sections.get("journeys")
    if node is None:
        return JourneySet(digest=playbook.digest)
    flows: list[tuple[Node, str]]
    policy = PolicyConfig()
    templates: dict[str, set[str]] | None = None
    if isinstance(node, Seq):
        flows = items(node, "journeys")
    else:
        section = JourneyFields(node, "journeys", "journeys")
        flows = section.items("flows")
        policy_fields = section.sub("policy", "policy")
        if policy_fields is not None:
            policy = _policy(policy_fields)
        templates = _templates(section)
    if known_templates is not None:
        templates = templates or {}
        for channel, names in known_templates.items():
            templates.setdefault(channel, set()).update(names)
    context = _Context(playbook, templates, policy)
    journeys: list[Journey] = []
    for flow, path in flows:
        journey = parse_journey(flow, path, context)
        if any(j.id == journey.id for j in journeys):
            fail(flow, f"{path}.id", f"duplicate journey id {journey.id!r}")
        journeys.append(journey)
    return JourneySet(journeys=tuple(journeys), policy=policy, digest=playbook.digest)


class _Context:
    """What a journey may refer to outside itself (None: not checked, e.g. a stored version)."""

    def __init__(
        self,
        playbook: Playbook | None,
        templates: Mapping[str, set[str]] | None,
        policy: PolicyConfig,
    ) -> None:
        self.playbook = playbook
        self.templates = templates
        self.policy = policy


def journey_from_definition(definition: Any, journey_id: str, version: str) -> Journey:
    """Rebuild a stored version (plain data) without checking outside references."""
    label = f"<journey {journey_id} version {version}>"
    node = _from_plain(definition, Mark(label, 1))
    journey = parse_journey(node, journey_id, _Context(None, None, PolicyConfig()))
    return _with_version(journey, version)


def _with_version(journey: Journey, version: str) -> Journey:
    from dataclasses import replace

    return replace(journey, version=version)


def _from_plain(value: Any, mark: Mark) -> Node:
    if isinstance(value, dict):
        return Map(
            {str(k): _from_plain(v, mark) for k, v in value.items()},
            {str(k): mark for k in value},
            mark,
        )
    if isinstance(value, list):
        nodes = tuple(_from_plain(v, mark) for v in value)
        return Seq(nodes, tuple(range(len(nodes))), mark)
    return Scalar(value, value, mark)


def parse_journey(node: Node, path: str, context: _Context) -> Journey:
    fields = JourneyFields(node, path, "journeys[]")
    journey_id = fields.name("id")
    steps: list[Step] = []
    step_nodes: dict[str, tuple[JourneyFields, list[tuple[str, str | None]]]] = {}
    for step_node, step_path in fields.items("steps"):
        step, refs, step_fields = _step(step_node, step_path, context)
        if step.id in step_nodes:
            step_fields.fail("id", f"duplicate step id {step.id!r}")
        step_nodes[step.id] = (step_fields, refs)
        steps.append(step)
    if not steps:
        fields.fail("steps", "a journey needs at least one step")
    _check_graph(steps, step_nodes)
    holdout = fields.number("holdout", 0.0)
    if not 0 <= holdout < 1:
        fields.fail("holdout", "expected a share from 0 to less than 1 (e.g. 0.1)")
    migrate: dict[str, str] = {}
    migrate_node = fields.get("migrate")
    if migrate_node is not None:
        if not isinstance(migrate_node, Map):
            fields.fail("migrate", "expected a mapping of old step → new step")
        for old, target in migrate_node.values.items():
            target_path = join(fields.at("migrate"), old)
            if not isinstance(target, Scalar) or not isinstance(target.value, str):
                fail(target, target_path, "expected the id of a step of this journey")
            if target.value not in step_nodes:
                fail(target, target_path, f"no step {target.value!r} in this journey")
            migrate[old] = target.value
    return Journey(
        id=journey_id,
        version=digest_of(to_raw(node)),
        name=fields.text("name", ""),
        trigger=_trigger(fields, context),
        only_if=_tests(fields, "if", context),
        steps=tuple(steps),
        goal=_goal(fields.sub("goal", "goal"), context),
        reentry=_reentry(fields),
        holdout=holdout,
        migrate=migrate,
        definition=to_value(node),
    )


# --- entry, goal, re-entry ---------------------------------------------------------------------


def _event_filter(fields: Fields) -> EventFilter:
    when = parse_filter(fields)
    if not fields.has("type"):
        # Engagement and engine events may arrive as `track` or as `internal` events.
        when = EventFilter(types=EVENT_TYPES, names=when.names, where=when.where)
    return when


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


def _trigger(fields: JourneyFields, context: _Context) -> Trigger:
    entry = fields.sub("entry", "entry")
    if entry is None:
        fields.fail("entry", "missing required field")
    kinds = [key for key in ("event", "stage", "score", "segment") if entry.has(key)]
    if len(kinds) != 1:
        entry.fail(
            kinds[1] if kinds else "event", "give exactly one of event, stage, score, segment"
        )
    if kinds[0] != "event" and (entry.has("type") or entry.has("where")):
        entry.fail("where", "`type` and `where` go with `event`")
    kind = kinds[0]
    if kind == "event":
        when = parse_filter(entry)
        if not when.types:
            when = EventFilter(
                types=tuple(t for t in EVENT_TYPES), names=when.names, where=when.where
            )
        return EventTrigger(when)
    if kind == "stage":
        return _stage_move(entry, "stage", context)
    if kind == "score":
        score = entry.sub("score", "score_crossing")
        assert score is not None
        model = _model_ref(score, context)
        return ScoreTrigger(model, parse_predicate(score))
    tests = _tests(entry, "segment", context)
    if not tests:
        entry.fail("segment", "list at least one condition")
    return SegmentTrigger(tests)


def _stage_move(fields: JourneyFields, key: str, context: _Context) -> StageTrigger:
    move = fields.sub(key, "stage_move")
    if move is None:
        fields.fail(key, "expected a mapping with `model` and `to`")
    model = _model_ref(move, context)
    to, before = move.texts("to"), move.texts("from")
    for name, stages in (("to", to), ("from", before)):
        for stage in stages:
            _stage_ref(move, name, model, stage, context)
    return StageTrigger(model=model, to=to, from_=before)


def _model_ref(fields: Fields, context: _Context, key: str = "model") -> str:
    model = fields.name(key)
    if context.playbook is not None and context.playbook.model(model) is None:
        fields.fail(key, f"no scoring model {model!r}")
    return model


def _stage_ref(fields: Fields, key: str, model: str, stage: str, context: _Context) -> None:
    if context.playbook is None:
        return
    found = context.playbook.model(model)
    if found is not None and found.stage(stage) is None:
        names = ", ".join(s.name for s in found.stages)
        fields.fail(key, f"model {model!r} has no stage {stage!r} (stages: {names})")


def _goal(fields: JourneyFields | None, context: _Context) -> Goal | None:
    if fields is None:
        return None
    if fields.has("stage") == fields.has("event"):
        fields.fail("event", "give exactly one of `event` and `stage`")
    if fields.has("stage"):
        return Goal(stage=_stage_move(fields, "stage", context))
    return Goal(event=_event_filter(fields))


def _reentry(fields: JourneyFields) -> Reentry:
    value = fields.value("reentry")
    if value is None or value == "once":
        return Reentry("once")
    if value == "always":
        return Reentry("always")
    if isinstance(value, str) and value.startswith("every "):
        probe = Map(
            {"every": Scalar(value.removeprefix("every ").strip(), None, fields.map.mark)},
            {},
            fields.map.mark,
        )
        seconds = Fields.__new__(Fields)
        seconds.map, seconds.path = probe, fields.at("reentry")
        period = seconds.duration("every")
        if period <= 0:
            fields.fail("reentry", "the period must be longer than 0")
        return Reentry("every", period)
    fields.fail("reentry", f"expected once, always or 'every 30d', got {value!r}")


# --- conditions --------------------------------------------------------------------------------


def _tests(fields: JourneyFields, key: str, context: _Context) -> tuple[Test, ...]:
    return tuple(
        _test(JourneyFields(node, path, "condition"), context) for node, path in fields.items(key)
    )


def _test(fields: JourneyFields, context: _Context) -> Test:
    kinds = [kind for kind in TEST_KINDS if fields.has(kind)]
    if len(kinds) != 1:
        fields.fail(kinds[1] if kinds else "trait", f"give exactly one of {', '.join(TEST_KINDS)}")
    kind = kinds[0]
    negate = fields.boolean("not", False)
    if kind == "engaged":
        engagement = fields.text("with", "clicked")
        if engagement not in ENGAGEMENTS:
            fields.fail("with", f"expected one of {', '.join(ENGAGEMENTS)}")
        return Test("engaged", fields.name("engaged"), engagement=engagement, negate=negate)
    if fields.has("with"):
        fields.fail("with", "`with` goes with `engaged`")
    if kind != "event" and (fields.has("within") or fields.has("where")):
        fields.fail("within", "`within` and `where` go with `event`")
    subject = fields.name(kind)
    if kind in ("score", "stage"):
        _model_ref(fields, context, kind)
    if kind == "event" and not fields.has("op"):
        test = Predicate("gte", 1)
    else:
        test = parse_predicate(fields)
    if kind == "stage" and context.playbook is not None and test.op in ("equals", "in"):
        wanted = test.value if isinstance(test.value, list) else [test.value]
        for stage in wanted:
            _stage_ref(fields, "value", subject, str(stage), context)
    where = parse_filter(fields).where if kind == "event" else ()
    return Test(
        kind,
        subject,
        test=test,
        within=fields.optional_duration("within"),
        where=where,
        negate=negate,
    )


# --- steps -------------------------------------------------------------------------------------

Refs = list[tuple[str, str | None]]
"""(key, step id) pairs: every edge out of a step, with the key that names it."""


def _step(node: Node, path: str, context: _Context) -> tuple[Step, Refs, JourneyFields]:
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
        step = AudienceStep(step_id, fields.name(action), action, ref("next"))  # type: ignore[arg-type]
    else:
        outcome = fields.text("outcome", "exited")
        if outcome not in OUTCOMES:
            fields.fail("outcome", f"expected one of {', '.join(OUTCOMES)}")
        step = ExitStep(step_id, outcome, fields.text("reason", ""))
    return step, refs, fields


def _send(fields: JourneyFields, step_id: str, context: _Context, refs: Refs) -> SendStep:
    if fields.has("channel") == fields.has("channels"):
        fields.fail("channel", "give exactly one of `channel` and `channels`")
    key = "channel" if fields.has("channel") else "channels"
    channels = fields.texts(key)
    if not channels:
        fields.fail(key, "name at least one channel")
    for channel in channels:
        if channel not in CHANNELS:
            fields.fail(key, f"unknown channel {channel!r} (expected: {', '.join(CHANNELS)})")
    template = fields.name("template")
    if context.templates is not None:
        for channel in channels:
            if template not in context.templates.get(channel, set()):
                declared = ", ".join(sorted(context.templates.get(channel, set()))) or "none"
                fields.fail(
                    "template",
                    f"unknown template {template!r} for {channel} (declared: {declared})",
                )
    return SendStep(
        step_id,
        channels=channels,
        template=template,
        next=_ref(fields, "next", refs),
        otherwise=_ref(fields, "otherwise", refs) if fields.has("otherwise") else None,
        transactional=fields.boolean("transactional", False),
    )


def _wait(fields: JourneyFields, step_id: str, refs: Refs) -> WaitStep:
    kinds = [k for k in ("duration", "until_time", "until_trait") if fields.has(k)]
    if len(kinds) != 1:
        fields.fail("duration", "give exactly one of duration, until_time, until_trait")
    if fields.has("weekdays") and kinds[0] != "until_time":
        fields.fail("weekdays", "`weekdays` goes with `until_time`")
    if fields.has("offset") and kinds[0] != "until_trait":
        fields.fail("offset", "`offset` goes with `until_trait`")
    if kinds[0] == "duration":
        return WaitStep(
            step_id, duration=fields.duration("duration"), next=_ref(fields, "next", refs)
        )
    if kinds[0] == "until_time":
        text = fields.text("until_time")
        hh, sep, mm = text.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            fields.fail("until_time", f"expected a local time like 09:30, got {text!r}")
        days = []
        for day in fields.texts("weekdays"):
            if day.casefold()[:3] not in WEEKDAYS:
                fields.fail("weekdays", f"expected days like mon, tue, got {day!r}")
            days.append(WEEKDAYS.index(day.casefold()[:3]))
        return WaitStep(
            step_id,
            until_time=int(hh) * 60 + int(mm),
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


def _branch(fields: JourneyFields, step_id: str, context: _Context, refs: Refs) -> BranchStep:
    cases: list[Case] = []
    if fields.has("cases"):
        if fields.has("if") or fields.has("then"):
            fields.fail("if", "give either `cases` or `if`/`then`, not both")
        for case_node, case_path in fields.items("cases"):
            case_fields = JourneyFields(case_node, case_path, "cases[]")
            tests = _tests(case_fields, "if", context)
            target = case_fields.ref("then")
            refs.append((f"cases[{len(cases)}].then", target))
            cases.append(Case(tests, target))
    else:
        if not fields.has("if"):
            fields.fail("if", "a branch needs `if` (with `then`) or `cases`")
        cases.append(Case(_tests(fields, "if", context), _ref(fields, "then", refs)))
    for case in cases:
        if not case.tests:
            fields.fail("cases" if fields.has("cases") else "if", "list at least one condition")
    return BranchStep(step_id, tuple(cases), _ref(fields, "else", refs))


def _ref(fields: JourneyFields, key: str, refs: Refs) -> str | None:
    target = fields.ref(key)
    refs.append((key, target))
    return target


def _update(
    fields: JourneyFields, step_id: str, context: _Context, refs: Refs
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
            fields.fail("model", "`stage` needs the scoring `model` it belongs to")
        _model_ref(fields, context)
        _stage_ref(fields, "stage", model, stage, context)
    elif model is not None:
        fields.fail("model", "`model` goes with `stage`")
    add, remove = fields.texts("add_tags"), fields.texts("remove_tags")
    if not (traits or add or remove or stage):
        fields.fail("traits", "an update_profile step changes at least one trait, tag or stage")
    return UpdateProfileStep(step_id, traits, add, remove, stage, model, _ref(fields, "next", refs))


# --- the graph ---------------------------------------------------------------------------------


def _check_graph(steps: list[Step], nodes: dict[str, tuple[JourneyFields, Refs]]) -> None:
    edges: dict[str, list[str]] = {}
    for step in steps:
        fields, refs = nodes[step.id]
        targets = []
        for key, target in refs:
            if target is None:
                continue
            if target not in nodes:
                fields.fail(
                    key.split("[")[0] if "[" in key else key,
                    f"no step {target!r} (dangling reference from {key})",
                )
            targets.append(target)
        edges[step.id] = targets
    reached = {steps[0].id}
    frontier = [steps[0].id]
    while frontier:
        for target in edges[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    for step in steps:
        if step.id not in reached:
            nodes[step.id][0].fail("id", f"step {step.id!r} is unreachable from {steps[0].id!r}")
    # A cycle must pass through a wait: find cycles among the steps that do not wait.
    quick = {s.id for s in steps if not isinstance(s, WAITING_TYPES)}
    state: dict[str, int] = {}

    def visit(step_id: str, trail: list[str]) -> None:
        state[step_id] = 1
        for target in edges[step_id]:
            if target not in quick:
                continue
            if state.get(target) == 1:
                loop = (
                    [*trail[trail.index(target) :], target]
                    if target in trail
                    else [step_id, target]
                )
                _loop_error(nodes[target][0], loop)
            if target not in state:
                visit(target, [*trail, target])
        state[step_id] = 2

    for step_id in quick:
        if step_id not in state:
            visit(step_id, [step_id])


def _loop_error(fields: JourneyFields, loop: list[str]) -> NoReturn:
    fields.fail("id", "loop without a wait: " + " → ".join(loop))


# --- policy and templates ----------------------------------------------------------------------


def _policy(fields: JourneyFields) -> PolicyConfig:
    caps = []
    for node, path in fields.items("caps"):
        cap = JourneyFields(node, path, "caps[]")
        most = cap.number("max")
        if most < 1 or most != int(most):
            cap.fail("max", "expected a whole number of at least 1")
        per = cap.duration("per")
        if per <= 0:
            cap.fail("per", "must be longer than 0")
        channels = cap.texts("channels") or cap.texts("channel")
        _channels(cap, "channels" if cap.has("channels") else "channel", channels)
        caps.append(Cap(int(most), per, channels))
    quiet = None
    quiet_fields = fields.sub("quiet_hours", "quiet_hours")
    if quiet_fields is not None:
        start, end = _minutes(quiet_fields, "start"), _minutes(quiet_fields, "end")
        channels = quiet_fields.texts("channels")
        _channels(quiet_fields, "channels", channels)
        quiet = QuietHours(start, end, channels)
    timezone = fields.text("default_timezone", "UTC")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fields.fail("default_timezone", f"unknown IANA time zone {timezone!r}")
    fallback: dict[str, tuple[str, ...]] = {}
    fallback_node = fields.get("fallback")
    if fallback_node is not None:
        node = fallback_node
        if not isinstance(node, Map):
            fields.fail("fallback", "expected a mapping of channel → channels to try next")
        for channel, targets in node.values.items():
            sub = JourneyFields.__new__(JourneyFields)
            sub.map = Map({channel: targets}, {channel: node.key_marks[channel]}, node.mark)
            sub.path = fields.at("fallback")
            names = sub.texts(channel)
            _channels(sub, channel, (channel, *names))
            fallback[channel] = names
    enabled = fields.texts("channels") if fields.has("channels") else CHANNELS
    _channels(fields, "channels", enabled)
    consent: dict[str, tuple[str, ...]] = dict(DEFAULT_CONSENT)
    consent_node = fields.get("consent")
    if consent_node is not None:
        node = consent_node
        if not isinstance(node, Map):
            fields.fail("consent", "expected a mapping of channel → opt-in trait(s)")
        for channel, traits in node.values.items():
            sub = JourneyFields.__new__(JourneyFields)
            sub.map = Map({channel: traits}, {channel: node.key_marks[channel]}, node.mark)
            sub.path = fields.at("consent")
            _channels(sub, channel, (channel,))
            consent[channel] = sub.texts(channel)
    return PolicyConfig(
        caps=tuple(caps),
        quiet_hours=quiet,
        default_timezone=timezone,
        fallback=fallback,
        channels=enabled,
        consent=consent,
    )


def _channels(fields: Fields, key: str, channels: Iterable[str]) -> None:
    for channel in channels:
        if channel not in CHANNELS:
            fields.fail(key, f"unknown channel {channel!r} (expected: {', '.join(CHANNELS)})")


def _minutes(fields: Fields, key: str) -> int:
    text = fields.value(key)
    # YAML 1.1 reads an unquoted 21:00 as a sexagesimal number (1260).
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text < 24 * 60:
        return text
    if isinstance(text, str):
        hh, sep, mm = text.partition(":")
        if sep and hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60:
            return int(hh) * 60 + int(mm)
    fields.fail(key, f"expected a local time like 21:00, got {text!r}")


def _templates(fields: JourneyFields) -> dict[str, set[str]] | None:
    node = fields.get("templates")
    if node is None:
        return None
    if not isinstance(node, Map):
        fields.fail("templates", "expected a mapping of channel → template names")
    out: dict[str, set[str]] = {}
    for channel, names in node.values.items():
        sub = JourneyFields.__new__(JourneyFields)
        sub.map = Map({channel: names}, {channel: node.key_marks[channel]}, node.mark)
        sub.path = fields.at("templates")
        _channels(sub, channel, (channel,))
        out[channel] = set(sub.texts(channel))
    return out
