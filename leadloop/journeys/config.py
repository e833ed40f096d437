"""The playbook's `journeys` section, validated into `journeys.model` values.

Every error names the file, line and dotted field (a `PlaybookError`), like the scoring section.
Besides the shape of each key, the graph is checked: every step reference exists (no dangling
branch), every step is reachable from the first, no cycle runs without a wait, and every template
a send step names is declared for its channel.

The section is either a list of journeys or a mapping with `flows` (the journeys), `policy` (the
contact-pressure policy) and `templates` (the names send steps may use, per channel).

Each part has its module: `journeys.fields` (the schema), `journeys.triggers` (entry, goal,
re-entry), `journeys.conditions`, `journeys.steps`, `journeys.graph` (the checks on the steps as
a graph), `journeys.loops` (loops across journeys) and `journeys.policy`; this one loads the
section and each journey.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from leadloop.errors import PlaybookError
from leadloop.journeys.conditions import parse_tests
from leadloop.journeys.fields import JourneyFields, ParseContext
from leadloop.journeys.graph import check_graph
from leadloop.journeys.loops import check_journey_loops
from leadloop.journeys.model import (
    DEFAULT_CONVERSION_WINDOW,
    Journey,
    JourneySet,
    Step,
    UpdateProfileStep,
)
from leadloop.journeys.policy import check_channels, parse_policy
from leadloop.journeys.steps import parse_step
from leadloop.journeys.triggers import parse_goal, parse_reentry, parse_trigger
from leadloop.playbook.diff import digest_with_values
from leadloop.playbook.fields import fail, items
from leadloop.playbook.model import Playbook
from leadloop.playbook.nodes import (
    Map,
    Mark,
    Node,
    Scalar,
    Seq,
    env_names,
    join,
    to_raw,
    to_value,
)
from leadloop.policy.model import PolicyConfig


def live_journeys(playbook: Playbook | None) -> tuple[Journey, ...]:
    """The journeys of a workspace's live playbook (none when it has none, or they do not
    load)."""
    if playbook is None:
        return ()
    try:
        return parse_journeys(playbook).journeys
    except PlaybookError:
        return ()


def parse_journeys(
    playbook: Playbook,
    known_templates: Mapping[str, Iterable[str]] | None = None,
    known_audiences: Iterable[str] | None = None,
) -> JourneySet:
    """Validate the playbook's `journeys` section; raises `PlaybookError` for the first problem.
    With `known_audiences`, audience steps naming others come back as warnings."""
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
            policy = parse_policy(policy_fields)
        templates = _templates(section)
    if known_templates is not None:
        templates = templates or {}
        for channel, names in known_templates.items():
            templates.setdefault(channel, set()).update(names)
    audiences = None if known_audiences is None else frozenset(known_audiences)
    context = ParseContext(playbook, templates, policy, audiences)
    journeys: list[Journey] = []
    for flow, path in flows:
        journey = parse_journey(flow, path, context)
        if any(j.id == journey.id for j in journeys):
            fail(flow, f"{path}.id", f"duplicate journey id {journey.id!r}")
        journeys.append(journey)
    check_journey_loops(
        journeys,
        [JourneyFields(flow, path, "journeys[]") for flow, path in flows],
        playbook.models,
    )
    return JourneySet(
        journeys=tuple(journeys),
        policy=policy,
        digest=playbook.digest,
        warnings=tuple(context.warnings),
    )


def journey_from_definition(definition: Any, journey_id: str, version: str) -> Journey:
    """Rebuild a stored version (plain data) without checking outside references."""
    label = f"<journey {journey_id} version {version}>"
    node = _from_plain(definition, Mark(label, 1))
    journey = parse_journey(node, journey_id, ParseContext(None, None, PolicyConfig()))
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


def parse_journey(node: Node, path: str, context: ParseContext) -> Journey:
    fields = JourneyFields(node, path, "journeys[]")
    journey_id = fields.name("id")
    steps: list[Step] = []
    step_nodes: dict[str, tuple[JourneyFields, list[tuple[str, str | None]]]] = {}
    for step_node, step_path in fields.items("steps"):
        step, refs, step_fields = parse_step(step_node, step_path, context)
        if step.id in step_nodes:
            step_fields.fail("id", f"duplicate step id {step.id!r}")
        step_nodes[step.id] = (step_fields, refs)
        steps.append(step)
    if not steps:
        fields.fail("steps", "a journey needs at least one step")
    check_graph(steps, step_nodes)
    holdout = fields.number("holdout", 0.0)
    if not 0 <= holdout < 1:
        fields.fail("holdout", "expected a share from 0 to less than 1 (e.g. 0.1)")
    window = fields.optional_duration("conversion_window")
    if window is not None and window <= 0:
        fields.fail("conversion_window", "expected a duration longer than 0, e.g. 14d")
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
    raw = to_raw(node)
    return Journey(
        id=journey_id,
        # The values count: a `${VAR}` the journey reads (a template, a wait) set otherwise is
        # another definition, and instances that started on the old one must keep it.
        version=digest_with_values(raw, to_value(node)),
        variables=tuple(sorted(env_names(raw))),
        name=fields.text("name", ""),
        trigger=parse_trigger(fields, context),
        only_if=parse_tests(fields, "if", context),
        steps=tuple(steps),
        goal=parse_goal(fields.sub("goal", "goal"), context),
        reentry=parse_reentry(fields),
        holdout=holdout,
        conversion_window=DEFAULT_CONVERSION_WINDOW if window is None else window,
        migrate=migrate,
        definition=_with_models(to_value(node), steps),
    )


def _with_models(definition: Any, steps: list[Step]) -> Any:
    """The definition stored per version, with the scoring model an `update_profile` step's
    `stage` defaulted to written in: a pinned version is rebuilt without its playbook."""
    for index, step in enumerate(steps):
        if isinstance(step, UpdateProfileStep) and step.model is not None:
            raw = definition["steps"][index]
            if "model" not in raw:
                definition["steps"][index] = {**raw, "model": step.model}
    return definition


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
        check_channels(sub, channel, (channel,))
        out[channel] = set(sub.texts(channel))
    return out
