"""How a journey starts and stops: its `entry` trigger, its `goal`, and its `reentry` rule."""

from __future__ import annotations

from leadloop.journeys.conditions import model_ref, parse_tests, stage_ref
from leadloop.journeys.fields import JourneyFields, ParseContext
from leadloop.journeys.model import (
    EventTrigger,
    Goal,
    Reentry,
    ScoreTrigger,
    SegmentTrigger,
    StageTrigger,
    Test,
    Trigger,
)
from leadloop.log.model import EVENT_TYPES
from leadloop.playbook.fields import Fields
from leadloop.playbook.model import PlaybookWarning
from leadloop.playbook.nodes import Map, Scalar
from leadloop.playbook.scoring import _filter as parse_filter
from leadloop.playbook.scoring import _predicate as parse_predicate
from leadloop.scoring.match import check
from leadloop.scoring.model import EventFilter


def _event_filter(fields: Fields) -> EventFilter:
    when = parse_filter(fields)
    if not fields.has("type"):
        # Engagement and engine events may arrive as `track` or as `internal` events.
        when = EventFilter(types=EVENT_TYPES, names=when.names, where=when.where)
    return when


def parse_trigger(fields: JourneyFields, context: ParseContext) -> Trigger:
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
        model = model_ref(score, context)
        return ScoreTrigger(model, parse_predicate(score))
    tests = parse_tests(entry, "segment", context)
    if not tests:
        entry.fail("segment", "list at least one condition")
    if context.playbook is not None and _in_without_events(tests):
        mark = (entry.get("segment") or entry.map).mark
        context.warnings.append(
            PlaybookWarning(
                mark.file,
                mark.line,
                entry.at("segment"),
                "holds for a profile that never had these events: each new profile enters "
                "at its first event, not after a silence; to mean a silence after activity, "
                "add a condition on the same event without `within` (`{event: NAME}`)",
            )
        )
    return SegmentTrigger(tests)


def _in_without_events(tests: tuple[Test, ...]) -> bool:
    """Whether a segment about a silence (an event count in a window) holds with every event
    count at 0: entered by a profile's first event of another kind, not by time passing."""
    counts = [t for t in tests if t.kind == "event"]
    if not any(t.within is not None for t in counts):
        return False
    return all(t.test is not None and check(0, t.test) != t.negate for t in counts)


def _stage_move(fields: JourneyFields, key: str, context: ParseContext) -> StageTrigger:
    move = fields.sub(key, "stage_move")
    if move is None:
        fields.fail(key, "expected a mapping with `model` and `to`")
    model = model_ref(move, context)
    to, before = move.texts("to"), move.texts("from")
    for name, stages in (("to", to), ("from", before)):
        for stage in stages:
            stage_ref(move, name, model, stage, context)
    return StageTrigger(model=model, to=to, from_=before)


def parse_goal(fields: JourneyFields | None, context: ParseContext) -> Goal | None:
    if fields is None:
        return None
    if fields.has("stage") == fields.has("event"):
        fields.fail("event", "give exactly one of `event` and `stage`")
    if fields.has("stage"):
        return Goal(stage=_stage_move(fields, "stage", context))
    return Goal(event=_event_filter(fields))


def parse_reentry(fields: JourneyFields) -> Reentry:
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
