"""The stored score state: rows written with every field spelled out (before states left out
their defaults) still read back as the same state."""

from __future__ import annotations

import msgspec

from leadloop.scoring.model import Award, Fading, RuleUsage, ScoreState

FULL_ROW = (
    '{"model_id":"lead","model_version":"e143b1f73e4b9cdc","stage":"MQL","as_of":1800000450.0,'
    '"fit":25.0,"fit_rules":["senior_title"],"steady":27.0,"fading":[[86400.0,4.0,1800000000.0]],'
    '"usage":{"pricing_page":{"count":2,"total":20.0,"recent":[[1800000000.0,10.0]]}},'
    '"model_recent":[],"model_total":20.0,"session_key":null,"session_last":null,'
    '"session_points":0.0,"last_activity":1800000450.0,"decay_steps":0}'
)


def test_a_row_with_every_field_reads_as_the_state_it_was() -> None:
    state = msgspec.json.decode(FULL_ROW, type=ScoreState)
    assert state == ScoreState(
        model_id="lead",
        model_version="e143b1f73e4b9cdc",
        stage="MQL",
        as_of=1800000450.0,
        fit=25.0,
        fit_rules=("senior_title",),
        steady=27.0,
        fading=(Fading(86400.0, 4.0, 1800000000.0),),
        usage={"pricing_page": RuleUsage(count=2, total=20.0, recent=(Award(1800000000.0, 10.0),))},
        model_total=20.0,
        last_activity=1800000450.0,
    )
    again = msgspec.json.encode(state)
    assert len(again) < len(FULL_ROW)
    assert msgspec.json.decode(again, type=ScoreState) == state
