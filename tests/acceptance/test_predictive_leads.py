"""The predictive model on real leads: the X Education case study (../shared/data/leads), sent
through the engine as identify calls and `Enrolled` events, trained from the log.

Targets from research/ml-data.md: cross-validated AUC ≥ 0.86 and Brier ≤ 0.14 on the
pre-contact fields, at least +0.05 AUC over the hand-written rules' score; a field the sales
team fills in after the outcome is refused by the playbook, and flagged when not declared.
And on UCI Bank Marketing without the call's duration, AUC ≥ 0.75.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from leadloop.errors import PlaybookError
from leadloop.playbook import load_playbook
from leadloop.scoring.predictive import service
from tests.contract.conftest import Harness, make_harness

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "examples" / "x-education.yaml"
LEADS = ROOT.parent / "shared" / "data" / "leads" / "x-education-leads.csv"

TRAITS = {
    "Lead Origin": "lead_origin",
    "Lead Source": "lead_source",
    "Do Not Email": "do_not_email",
    "Do Not Call": "do_not_call",
    "Country": "country",
    "Specialization": "specialization",
    "How did you hear about X Education": "heard_from",
    "What is your current occupation": "occupation",
    "What matters most to you in choosing a course": "matters_most",
    "Search": "search",
    "Digital Advertisement": "digital_advertisement",
    "Through Recommendations": "through_recommendations",
    "City": "city",
    "A free copy of Mastering The Interview": "free_copy",
    "TotalVisits": "total_visits",
    "Total Time Spent on Website": "time_on_site",
    "Page Views Per Visit": "page_views_per_visit",
    # Filled in by the sales team after talking to the lead: it describes the outcome.
    "Tags": "tags",
}
NUMBERS = {"total_visits", "time_on_site", "page_views_per_visit"}


def lead_messages() -> Iterator[dict[str, Any]]:
    if not LEADS.exists():
        pytest.fail(f"the evaluation data is missing: {LEADS} (see ../shared/data/README.md)")
    with LEADS.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            user = row["Prospect ID"]
            traits: dict[str, Any] = {}
            for column, trait in TRAITS.items():
                if row[column] != "":
                    traits[trait] = float(row[column]) if trait in NUMBERS else row[column]
            yield {"type": "identify", "userId": user, "traits": traits}
            if row["Converted"] == "1":
                yield {"type": "track", "userId": user, "event": "Enrolled"}


def ingest(h: Harness) -> None:
    batch: list[dict[str, Any]] = []
    for message in lead_messages():
        batch.append(message)
        if len(batch) == 500:
            h.send(*batch)
            batch = []
    if batch:
        h.send(*batch)
    h.settle()


def train(h: Harness, playbook: Path) -> service.Stored:
    model = load_playbook(playbook, env={}).models[0]
    result = h.engine.read_sync(
        lambda c: service.train(c, "default", model, h.engine.clock.now(), store=False)
    )
    assert isinstance(result, service.Stored), result
    return result


@pytest.fixture(scope="module")
def leads_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    db = tmp_path_factory.mktemp("leads") / "leadloop.db"
    h = make_harness(f"sqlite:///{db}", str(PLAYBOOK))
    try:
        ingest(h)
        yield h
    finally:
        h.engine.stop()


def test_the_model_beats_the_rules_on_real_leads(leads_harness: Harness) -> None:
    stored = train(leads_harness, PLAYBOOK)
    report = stored.report
    assert report.profiles == 9237 and report.conversions == 3559
    assert report.auc >= 0.86, report
    assert report.brier <= 0.14, report
    assert report.auc >= report.rules_auc + 0.05, report
    # Learned from the leads that came first, it holds for the newest fifth (0.849 measured;
    # the file's order is the only arrival order this data set has).
    assert report.newest_auc is not None and report.newest_auc >= 0.83, report
    # The hand-written points alone are a fair baseline, not a straw man (0.81 in the note).
    assert report.rules_auc >= 0.78, report
    assert stored.suspects == ()


def test_a_post_outcome_field_is_refused_and_flagged_when_undeclared(
    leads_harness: Harness, tmp_path: Path
) -> None:
    text = PLAYBOOK.read_text()
    with_tags = text.replace("- { score: fit }", "- { score: fit }\n          - { trait: tags }")
    refused = tmp_path / "refused.yaml"
    refused.write_text(with_tags)
    with pytest.raises(PlaybookError) as caught:
        load_playbook(refused, env={})
    assert "post_outcome" in caught.value.message and caught.value.field.endswith("trait")

    # Not declared: the playbook loads, and training names the field as the suspect it is.
    undeclared = tmp_path / "undeclared.yaml"
    undeclared.write_text(with_tags.replace("post_outcome: [tags, ", "post_outcome: ["))
    stored = train(leads_harness, undeclared)
    assert [feature for feature, _ in stored.suspects] == ["tags"]
    assert stored.report.auc > 0.9  # what leakage looks like: far above any honest model


BANK = ROOT.parent / "shared" / "data" / "bank-marketing" / "bank-additional.csv"
BANK_CATEGORIES = [
    "job",
    "marital",
    "education",
    "default",
    "housing",
    "loan",
    "contact",
    "month",
    "day_of_week",
    "poutcome",
]
BANK_NUMBERS = [
    "age",
    "campaign",
    "pdays",
    "previous",
    "emp.var.rate",
    "cons.price.idx",
    "cons.conf.idx",
    "euribor3m",
    "nr.employed",
]
BANK_PLAYBOOK = """\
version: 1
scoring:
  models:
    - id: client
      fit:
        - {id: earlier_success, field: poutcome, op: equals, value: success, points: 30}
        - {id: mobile, field: contact, op: equals, value: cellular, points: 5}
      stages: [{name: prospect}]
      predict:
        outcome: {type: track, event: Deposit Subscribed}
        # The call's length is known only once the call that sold (or did not) is over.
        post_outcome: [duration]
        features:
FEATURES
"""


def trait(column: str) -> str:
    """A dot in a trait name reads as a path into an object (as in fit rules): `emp.var.rate`
    is sent as `emp_var_rate`."""
    return column.replace(".", "_")


def test_the_learner_holds_on_a_second_data_set(tmp_path: Path) -> None:
    """UCI Bank Marketing (10 % sample), without the leaking call duration: AUC ≥ 0.75."""
    if not BANK.exists():
        pytest.fail(f"the evaluation data is missing: {BANK} (see ../shared/data/README.md)")
    with BANK.open(newline="", encoding="utf-8") as handle:
        # Each line of this copy is wrapped in one more pair of quotes (data README).
        lines = [next(csv.reader([line]))[0] for line in handle if line.strip()]
    rows = list(csv.DictReader(lines, delimiter=";"))
    features = [f"          - {{trait: {name}}}" for name in BANK_CATEGORIES] + [
        f"          - {{trait: {trait(name)}, kind: number}}" for name in BANK_NUMBERS
    ]
    playbook = tmp_path / "bank.yaml"
    playbook.write_text(BANK_PLAYBOOK.replace("FEATURES", "\n".join(features)))
    h = make_harness(f"sqlite:///{tmp_path}/leadloop.db", str(playbook))
    try:
        messages: list[dict[str, Any]] = []
        for number, row in enumerate(rows):
            user = f"client-{number}"
            traits: dict[str, Any] = {name: row[name] for name in BANK_CATEGORIES}
            traits.update({trait(name): float(row[name]) for name in BANK_NUMBERS})
            traits["duration"] = float(row["duration"])
            messages.append({"type": "identify", "userId": user, "traits": traits})
            if row["y"] == "yes":
                messages.append({"type": "track", "userId": user, "event": "Deposit Subscribed"})
        for start in range(0, len(messages), 500):
            h.send(*messages[start : start + 500])
        h.settle()
        stored = train(h, playbook)
    finally:
        h.engine.stop()
    assert stored.report.profiles == 4119 and stored.report.conversions == 451
    assert stored.report.auc >= 0.75, stored.report

    leaky = tmp_path / "leaky.yaml"
    leaky.write_text(playbook.read_text() + "          - {trait: duration, kind: number}\n")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(leaky, env={})
    assert "post_outcome" in caught.value.message
