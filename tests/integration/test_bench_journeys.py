"""`leadloop bench journeys` at a tiny size: every part runs end to end and its own checks hold
(each wake-up sent once; the sweep gives every profile its one timer). No rate is asserted:
speed is reported by the benchmark, not tested."""

from __future__ import annotations

import re

from tests.integration.benchrun import table


def test_the_journeys_benchmark_runs_at_a_tiny_size_with_a_sweep() -> None:
    rows = table(
        "journeys",
        "--entries", "300", "--sizes", "200,400", "--due", "100", "--late-rates", "",
        "--sweep-sizes", "500",
    )  # fmt: skip
    # How many of the smaller sizes fall due is a random split's draw.
    measures = [re.sub(r" \(\d+ due\)", "", row.split(" | ")[1]) for row in rows]
    assert measures == [
        "journey entries/s (identify + Go per entry)",
        "timer wake-ups/s (100 waiting, all due)",
        "wake-ups/s, 200 instances waiting",
        "timer scan alone (due timers → log events), 200 waiting",
        "wake-ups/s, 400 instances waiting",
        "timer scan alone (due timers → log events), 400 waiting",
        "segment sweep of 500 profiles under 200 live events/s, profiles/s",
        "peak RSS (MiB), whole benchmark process",
    ], rows
    sweep = rows[6]
    assert "nan" not in sweep and "during it" in sweep and "before it" in sweep, sweep
