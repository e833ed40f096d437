"""A scoring model's version: what decides that applying a playbook rescores every profile,
and the version the ledger records. `${VAR}` values in the rules count in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.playbook import load_playbook
from tests.unit.scoring.scoring_factories import model_from

EXAMPLE = Path(__file__).parents[3] / "examples" / "playbook.yaml"

MODEL = """\
    - id: lead
      fit:
        - {id: vp, field: title, op: matches, value: '${SENIOR_TITLE}', points: 15}
      engagement:
        - {id: pricing, type: page, where: [{field: page.path, op: equals, \
value: '${PRICING_PATH:-/pricing}'}], points: 10}
      stages: [{name: lead}, {name: MQL, at: 50}]
      predict:
        outcome: {type: track, event: '${OUTCOME:-Deal Won}'}
        features: [{trait: source}]
"""


@pytest.mark.parametrize(
    "other", [{"SENIOR_TITLE": "CTO"}, {"SENIOR_TITLE": "VP", "PRICING_PATH": "/plans"}]
)
def test_a_variable_a_rule_reads_is_part_of_the_model_version(other: dict[str, str]) -> None:
    """The rules score what the variable says: another value is another model, whose profiles
    are rescored, and whose ledger lines name another version."""
    vp = model_from(MODEL, {"SENIOR_TITLE": "VP"})
    assert vp.fit[0].test.value == "VP"
    assert model_from(MODEL, {"SENIOR_TITLE": "VP"}).version == vp.version
    changed = model_from(MODEL, other)
    assert changed.version != vp.version
    # A value the text already gives (the default) is the same model as that value set.
    assert model_from(MODEL, {"SENIOR_TITLE": "VP", "PRICING_PATH": "/pricing"}).version == (
        vp.version
    )


def test_the_version_holds_no_value() -> None:
    model = model_from(MODEL, {"SENIOR_TITLE": "a-secret-looking-title"})
    assert "a-secret-looking-title" not in model.version and len(model.version) == 16


def test_a_variable_only_predict_reads_rescores_nobody() -> None:
    won = model_from(MODEL, {"SENIOR_TITLE": "VP"})
    trial = model_from(MODEL, {"SENIOR_TITLE": "VP", "OUTCOME": "Trial Started"})
    assert trial.version == won.version
    assert won.predict is not None and trial.predict is not None
    assert trial.predict.digest != won.predict.digest


def test_a_model_without_variables_keeps_its_version() -> None:
    """Upgrading must not rescore every profile of every workspace: a model that substitutes
    nothing has the version it had before values counted, byte for byte, whatever the
    environment holds (the example's webhook secrets are outside the model)."""
    for env in ({}, {"LEADLOOP_SALES_WEBHOOK_URL": "https://x.test", "SENIOR_TITLE": "CTO"}):
        assert load_playbook(EXAMPLE, env=env).models[0].version == "3595b286f8cf7517"
    # A `$${` escape is literal text, not a substitution.
    escaped = model_from(
        MODEL.replace("'${SENIOR_TITLE}'", "VP")
        .replace("'${PRICING_PATH:-/pricing}'", "'cost $${X}'")
        .replace("'${OUTCOME:-Deal Won}'", "Deal Won")
    )
    assert escaped.engagement[0].when.where[0].test.value == "cost ${X}"
    assert escaped.version == "f6ef27dc17f06563"
