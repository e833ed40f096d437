"""Conditions (`if`, `segment`, branch `cases`): one test each on a trait, score, stage, event
or engagement. The scoring models and stages they name are checked against the playbook, unless
the context has none (a stored version is rebuilt without outside checks).
"""

from __future__ import annotations

from leadloop.journeys.fields import JourneyFields, ParseContext
from leadloop.journeys.model import ENGAGEMENTS, TEST_KINDS, Test
from leadloop.playbook.fields import Fields
from leadloop.playbook.scoring import _filter as parse_filter
from leadloop.playbook.scoring import _predicate as parse_predicate
from leadloop.scoring.model import Predicate


def model_ref(fields: Fields, context: ParseContext, key: str = "model") -> str:
    model = fields.name(key)
    if context.playbook is not None and context.playbook.model(model) is None:
        fields.fail(key, f"no scoring model {model!r}")
    return model


def stage_ref(fields: Fields, key: str, model: str, stage: str, context: ParseContext) -> None:
    if context.playbook is None:
        return
    found = context.playbook.model(model)
    if found is not None and found.stage(stage) is None:
        names = ", ".join(s.name for s in found.stages)
        fields.fail(key, f"model {model!r} has no stage {stage!r} (stages: {names})")


def parse_tests(fields: JourneyFields, key: str, context: ParseContext) -> tuple[Test, ...]:
    return tuple(
        _test(JourneyFields(node, path, "condition"), context) for node, path in fields.items(key)
    )


def _test(fields: JourneyFields, context: ParseContext) -> Test:
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
        model_ref(fields, context, kind)
    if kind == "event" and not fields.has("op"):
        test = Predicate("gte", 1)
    else:
        # Stage names are case-insensitive wherever the playbook names one (`ScoringModel.stage`).
        test = parse_predicate(fields, fold=kind == "stage")
    if kind == "stage" and context.playbook is not None and test.op in ("equals", "in"):
        wanted = test.value if isinstance(test.value, list) else [test.value]
        for stage in wanted:
            stage_ref(fields, "value", subject, str(stage), context)
    where = parse_filter(fields).where if kind == "event" else ()
    return Test(
        kind,
        subject,
        test=test,
        within=fields.optional_duration("within"),
        where=where,
        negate=negate,
    )
