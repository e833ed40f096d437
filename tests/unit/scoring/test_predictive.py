"""The predictive model's pure parts: what a profile is observed as, the learner, the playbook."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from leadloop.errors import PlaybookError
from leadloop.playbook import load_playbook
from leadloop.scoring.model import MAX_FEATURES
from leadloop.scoring.predictive import learn
from leadloop.scoring.predictive.features import category, observe
from tests.unit.scoring.scoring_factories import DAY, T0, event, model_from, page

MODEL = """\
    - id: lead
      fit:
        - {id: vp, field: title, op: matches, value: VP, points: 15}
      engagement:
        - {id: pricing, type: page, where: [{field: page.path, op: equals, value: /pricing}], \
points: 10}
      stages: [{name: lead}, {name: MQL, at: 50}]
      predict:
        outcome: {type: track, event: Deal Won}
        min_conversions: 2
        post_outcome: [deal_size]
        features:
          - {trait: source}
          - {trait: employees, kind: number}
          - {id: pricing_views, count: {type: page, where: [{field: page.path, op: equals, \
value: /pricing}]}, within: 7d}
          - {score: total}
"""


def test_a_converted_profile_is_observed_just_before_its_outcome() -> None:
    model = model_from(MODEL)
    assert model.predict is not None
    history = [
        event("identify", T0, traits={"source": "Referral", "employees": "1,000", "title": "VP"}),
        page("/pricing", T0 + 1),
        event("track", T0 + DAY, "Deal Won"),
        # After the outcome: a new source, more pricing views. Training must not see them.
        event("identify", T0 + 2 * DAY, traits={"source": "sales-call"}),
        page("/pricing", T0 + 2 * DAY),
    ]
    seen = observe("p1", history, model, model.predict, T0 + 9 * DAY, before_outcome=True)
    assert seen is not None
    assert seen.converted_at == T0 + DAY and seen.at == T0 + DAY
    assert seen.values == ("referral", 1000.0, 1.0, 25.0)
    assert seen.rules_total == 25.0
    # Serving observes the whole history, now: the later pricing view fell out of `within`
    # for the first one, and the newer source is read.
    served = observe("p1", history, model, model.predict, T0 + 8.5 * DAY, before_outcome=False)
    assert served is not None
    assert served.values[0] == "sales-call" and served.values[2] == 1.0
    assert served.converted_at == T0 + DAY


def test_a_profile_whose_first_event_is_the_outcome_teaches_nothing() -> None:
    model = model_from(MODEL)
    assert model.predict is not None
    history = [event("track", T0, "Deal Won"), page("/pricing", T0 + 1)]
    assert observe("p1", history, model, model.predict, T0 + DAY, before_outcome=True) is None


def test_categories_ignore_case_and_spaces_and_refuse_structures() -> None:
    assert category(" Google ") == category("google") == "google"
    assert category(True) == "true" and category(3.0) == "3"
    assert category(["a"]) is None and category({"a": 1}) is None and category("  ") is None


def test_a_number_as_a_category_keeps_its_digits() -> None:
    """Seven-digit codes (a NAICS industry, a postcode) read as six significant digits were
    one level, and a code sent as a number was another level than the same code as text."""
    assert category(1234567) != category(1234568)
    assert category(1234567) == category("1234567") == category(1234567.0) == "1234567"
    assert category(0.125) == "0.125" and category(-2) == "-2"


def test_auc_counts_ties_as_half() -> None:
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    assert learn.auc(np.array([0.9, 0.1, 0.8, 0.2]), labels) == 1.0
    assert learn.auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5
    assert learn.auc(np.array([0.1, 0.9, 0.2, 0.8]), labels) == 0.0
    assert learn.auc(np.array([0.9, 0.9, 0.1, 0.1]), labels) == 0.5
    assert math.isnan(learn.auc(np.array([0.1, 0.2]), np.array([1.0, 1.0])))


def _synthetic(n: int, seed: int = 7) -> tuple[list[tuple[str | float | None, ...]], list[bool]]:
    """Conversion driven by a category and a threshold on a number; some values missing."""
    rng = random.Random(seed)
    rows: list[tuple[str | float | None, ...]] = []
    labels: list[bool] = []
    for _ in range(n):
        source = rng.choice(["ads", "referral", "organic", None])
        minutes = rng.choice([None, rng.uniform(0, 60)])
        chance = 0.1 + 0.5 * (source == "referral") + 0.3 * (minutes is not None and minutes > 30)
        rows.append((source, minutes))
        labels.append(rng.random() < chance)
    return rows, labels


def test_the_learner_finds_the_signal_and_is_deterministic() -> None:
    rows, labels = _synthetic(3000)
    kinds: list[learn.Kind] = ["category", "number"]
    keys = [f"p{i}" for i in range(len(rows))]
    report = learn.cross_validate(kinds, keys, rows, labels, [0.0] * len(rows))
    assert report.folds == 5 and report.profiles == 3000
    assert report.auc > 0.75 and report.rules_auc == 0.5
    first, second = learn.train(kinds, rows, labels), learn.train(kinds, rows, labels)
    assert first == second
    referral, ads = learn.probabilities(first, [("referral", 45.0), ("ads", 45.0)])
    assert referral > ads + 0.3
    assert (
        learn.probabilities(first, [("ads", 45.0)])[0]
        > learn.probabilities(first, [("ads", 5.0)])[0]
    )
    # A level never seen in training and a missing value are scored, not refused.
    unseen = learn.probabilities(first, [("carrier pigeon", None)])[0]
    assert 0.0 < unseen < 1.0
    moved = learn.contributions(first, ("referral", 45.0))
    assert moved[0] > 0 and moved[1] > 0


def test_a_feature_that_gives_the_outcome_away_is_flagged() -> None:
    rows, labels = _synthetic(1000)
    leaky = [(*row, "won" if label else "lost") for row, label in zip(rows, labels, strict=True)]
    kinds: list[learn.Kind] = ["category", "number", "category"]
    keys = [f"p{i}" for i in range(len(rows))]
    found = learn.suspects(kinds, keys, leaky, labels)
    assert [index for index, _ in found] == [2]
    assert found[0][1] >= learn.SUSPECT_AUC


def test_changing_only_predict_keeps_the_model_version() -> None:
    """A new version would rescore every profile; what a model learns from scores nobody."""
    before = model_from(MODEL)
    after = model_from(MODEL.replace("min_conversions: 2", "min_conversions: 3"))
    assert before.version == after.version
    assert before.predict is not None and after.predict is not None
    assert before.predict.digest != after.predict.digest
    changed_rules = model_from(MODEL.replace("points: 15", "points: 16"))
    assert changed_rules.version != before.version


def test_a_variable_the_predict_section_reads_is_part_of_its_digest() -> None:
    """`${ENV}` is substituted in `predict` too: the outcome event and the features are then
    what the variable says, and a model trained on another value is another model (stale)."""
    text = MODEL.replace("event: Deal Won", "event: '${OUTCOME}'").replace(
        "{trait: source}", "{trait: '${SOURCE_TRAIT:-source}'}"
    )
    won = model_from(text, {"OUTCOME": "Deal Won"})
    assert won.predict is not None and won.predict.outcome.names == ("Deal Won",)
    assert won.predict.features[0].id == "source"
    for env in ({"OUTCOME": "Trial Started"}, {"OUTCOME": "Deal Won", "SOURCE_TRAIT": "utm"}):
        other = model_from(text, env)
        assert other.predict is not None and other.predict.digest != won.predict.digest
    again = model_from(text, {"OUTCOME": "Deal Won"})
    assert again.predict is not None and again.predict.digest == won.predict.digest
    # With nothing substituted, the digest models were trained with before: none goes stale.
    plain = model_from(MODEL)
    assert plain.predict is not None and plain.predict.digest == "02dbf8e9ee0cd5ff"


def test_a_variable_in_the_rules_a_score_feature_reads_is_part_of_its_digest() -> None:
    text = MODEL.replace("value: VP", "value: '${SENIOR_TITLE}'")
    low, high = model_from(text, {"SENIOR_TITLE": "VP"}), model_from(text, {"SENIOR_TITLE": "CTO"})
    assert low.predict is not None and high.predict is not None
    assert low.predict.digest != high.predict.digest


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("{trait: source}", "{trait: deal_size}", "features[0].trait", "post_outcome"),
        # A dot reads into an object: a part of a post-outcome trait is set after it too.
        ("{trait: source}", "{trait: Deal_Size.amount}", "features[0].trait", "post_outcome"),
        ("{trait: source}", "{trait: source, kind: text}", "features[0].kind", "expected one of"),
        ("{trait: source}", "{trait: source, score: fit}", "features[0].trait", "exactly one"),
        ("{trait: source}", "{score: total}", "features[3]", "duplicate feature id"),
        ("{score: total}", "{score: bonus}", "features[3].score", "expected one of"),
        ("{score: total}", "{score: total, within: 7d}", "features[3].within", "only a `count`"),
        ("within: 7d", "within: 0s", "features[2].within", "longer than 0"),
        ("{id: pricing_views, count", "{count", "features[2].id", "missing"),
        # Counting the identify calls that set a post-outcome trait learns it all the same.
        (
            "{type: page, where: [{field: page.path",
            "{type: identify, where: [{field: context.traits.Deal_Size.amount",
            "features[2].count.where[0].field",
            "post_outcome",
        ),
        # The rules' score carries what its rules read: a post-outcome trait among them.
        ("post_outcome: [deal_size]", "post_outcome: [Title]", "features[3].score", "'vp'"),
        (
            "{id: pricing, type: page, where: [{field: page.path",
            "{id: pricing, type: identify, where: [{field: traits.deal_size",
            "features[3].score",
            "'pricing'",
        ),
        # Printed in `explain` and the API: an explicit id is a name, whatever the feature.
        ("{trait: source}", '{trait: source, id: ""}', "features[0].id", "non-empty"),
        ("{score: total}", '{score: total, id: "a\\nb"}', "features[3].id", "control"),
        ("{type: track, event: Deal Won}", "{type: track}", "outcome.event", "name the outcome"),
        ("min_conversions: 2", "min_conversions: 0", "min_conversions", "at least 1"),
        ("min_conversions: 2", "min_conversions: 2.5", "min_conversions", "whole number"),
        ("      predict:\n", "      predict:\n        colour: red\n", "colour", "unknown key"),
    ],
)
def test_bad_predict_sections_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    text = "version: 1\nscoring:\n  models:\n" + MODEL.replace(old, new, 1)
    assert old in MODEL
    path = tmp_path / "playbook.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, env={})
    error = caught.value
    assert error.file == str(path) and error.line > 3, str(error)
    assert error.field.endswith(field), str(error)
    assert words in error.message, str(error)


def test_the_forward_check_trains_on_the_oldest_and_scores_the_newest() -> None:
    rows, labels = _synthetic(2000)
    kinds: list[learn.Kind] = ["category", "number"]
    arrivals = list(range(len(rows)))
    score = learn.forward_auc(kinds, arrivals, rows, labels)
    assert score is not None and score > 0.75
    # Newest fifth all alike: no AUC to give, rather than a meaningless one.
    same = [True] * 1600 + [False] * 400
    assert learn.forward_auc(kinds, arrivals, rows, same) is None
    # When the newest leads behave unlike the old (the signal flips), the check shows it.
    flipped = labels[:1600] + [not label for label in labels[1600:]]
    flipped_score = learn.forward_auc(kinds, arrivals, rows, flipped)
    assert flipped_score is not None and flipped_score < 0.3


def test_a_number_beyond_a_double_is_missing_and_training_goes_on() -> None:
    """A form's digits past a double's range ("999…") read as infinity: one such lead must
    neither make the fit fail for the whole workspace nor be served as an infinite value."""
    model = model_from(MODEL)
    assert model.predict is not None
    huge = "9" * 400
    history = [event("identify", T0, traits={"source": "ads", "employees": huge})]
    seen = observe("p1", history, model, model.predict, T0 + DAY, before_outcome=False)
    assert seen is not None and seen.values[1] is None
    rows, labels = _synthetic(500)
    kinds: list[learn.Kind] = ["category", "number"]
    fitted = learn.train(kinds, [*rows, ("ads", seen.values[1])], [*labels, True])
    assert all(math.isfinite(w) for w in fitted.weights)
    assert learn.contributions(fitted, ("ads", math.inf)) == learn.contributions(
        fitted, ("ads", None)
    )


def test_what_happened_after_the_outcome_is_not_learned_whatever_the_log_order() -> None:
    """A CRM sends `Deal Won` with the time the deal closed, after the customer's later visits
    reached the log: those visits happened after the outcome, and must not be learned as what
    led to it (nor can a later-logged earlier win leave the visits before it in)."""
    model = model_from(MODEL)
    assert model.predict is not None
    start = [event("identify", T0, traits={"source": "ads"}), page("/pricing", T0 + 1)]
    late = [page("/pricing", T0 + 2 * DAY), event("track", T0 + DAY, "Deal Won")]
    # Two wins, the earlier one logged last: the profile converted at the earlier one.
    twice = [event("track", T0 + 3 * DAY, "Deal Won"), *late]
    for history in ([*start, *late], [*start, *twice]):
        seen = observe("p1", history, model, model.predict, T0 + 9 * DAY, before_outcome=True)
        assert seen is not None
        assert seen.converted_at == seen.at == T0 + DAY
        assert seen.values[2] == 1.0 and seen.rules_total == 10.0
    # Told apart only by the log, an event logged before the outcome at the same instant (an
    # identify and its `Deal Won` in one batch) is what the engine knew when it arrived.
    same = [event("identify", T0, traits={"source": "ads"}), event("track", T0, "Deal Won")]
    seen = observe("p1", same, model, model.predict, T0 + 9 * DAY, before_outcome=True)
    assert seen is not None and seen.values[0] == "ads"


def test_a_model_learned_from_the_rules_score_is_stale_once_the_rules_change() -> None:
    """Weights learned on the old points' scale, served the new points, would misplace every
    profile; a model that does not read the score is unaffected by the rules."""
    before = model_from(MODEL)
    after = model_from(MODEL.replace("points: 15", "points: 60"))
    assert before.predict is not None and after.predict is not None
    assert before.predict.digest != after.predict.digest
    # A stage's threshold moves no point: no training to redo.
    moved = model_from(MODEL.replace("at: 50", "at: 60"))
    assert moved.predict is not None and moved.predict.digest == before.predict.digest
    without = MODEL.replace("          - {score: total}\n", "")
    plain, plain_after = (
        model_from(without),
        model_from(without.replace("points: 15", "points: 60")),
    )
    assert plain.predict is not None and plain_after.predict is not None
    assert plain.predict.digest == plain_after.predict.digest


def test_an_outcome_dated_after_training_time_does_not_move_the_observation() -> None:
    """A `Deal Won` typed with the wrong year (3026) still marks a conversion, but the profile
    is observed as of the training time, not in a future where its engagement has decayed
    away and events it has not had yet would count."""
    model = model_from(MODEL)
    assert model.predict is not None
    now = T0 + 9 * DAY
    history = [
        event("identify", T0, traits={"source": "ads", "title": "VP"}),
        page("/pricing", T0 + 8 * DAY),
        event("track", T0 + 400_000 * DAY, "Deal Won"),
    ]
    seen = observe("p1", history, model, model.predict, now, before_outcome=True)
    assert seen is not None
    assert seen.converted_at == T0 + 400_000 * DAY
    assert seen.at == now
    # The pricing view a day ago is within the 7-day window and its points have not decayed.
    assert seen.values[2] == 1.0 and seen.rules_total == 25.0


def test_the_design_stays_within_its_column_budget_however_many_categories() -> None:
    """Every category feature full of frequent levels: the levels each keeps shrink so the
    matrix (profiles x columns) stays bounded, and a handful of features keeps them all."""
    kinds: list[learn.Kind] = ["category"] * 24
    rows = [tuple(f"level-{(i + f) % 60}" for f in range(24)) for i in range(60 * 10)]
    columns = learn.columns_for(kinds, rows)
    assert len(columns) <= learn.MAX_COLUMNS
    assert {c.feature for c in columns} == set(range(24))
    few = learn.columns_for(["category"] * 5, [row[:5] for row in rows])
    assert sum(1 for c in few if c.kind == "is") == 5 * learn.MAX_LEVELS


def test_a_predict_section_with_too_many_features_is_refused(tmp_path: Path) -> None:
    many = "".join(f"          - {{trait: t{i}}}\n" for i in range(MAX_FEATURES + 1))
    text = "version: 1\nscoring:\n  models:\n" + MODEL.replace(
        "          - {trait: source}\n", many, 1
    )
    path = tmp_path / "playbook.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, env={})
    assert caught.value.field.endswith("features"), str(caught.value)
    assert f"at most {MAX_FEATURES}" in caught.value.message
