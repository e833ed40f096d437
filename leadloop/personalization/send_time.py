"""Send-time optimisation: the hour of the day (in the profile's time zone) when it is most
likely to engage, from the hours of its past opens and clicks, shrunk towards a population
curve when it has few. Pure: hours in, an hour out.

Per `research/ml-data.md` §2(b): an hour-of-day histogram with Bayesian shrinkage to a prior
curve (a person with no history gets the curve's peak, the best global hour), each engagement
also counting half for its neighbouring hours (people open around their habit, not on the
minute), and a share of waits sent to a random hour of the window, so the log keeps showing
engagement at other hours and the habit the engine creates does not confirm itself (opens
cluster in the first hours after any send).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# A working-day curve in the shape of the call-centre arrivals the research note measured
# (`fpp3/bank_calls`: 84 an hour at 07:00, a 283 peak at 10:00, 70 at 21:00), low at night.
PRIOR: tuple[float, ...] = (
    10, 6, 4, 3, 3, 5, 20, 84, 170, 250, 283, 270,
    240, 250, 245, 230, 200, 170, 140, 120, 95, 70, 40, 20,
)  # fmt: skip
PRIOR_STRENGTH = 4.0
"""Engagements the prior is worth: with a dozen of its own, a profile's habit decides."""
EXPLORE = 0.1
"""Share of waits that go to a random hour of their window instead of the best one."""


def hour_scores(hours: Sequence[int]) -> list[float]:
    """Per hour of the day, the posterior weight of engaging then."""
    total = sum(PRIOR)
    scores = [PRIOR_STRENGTH * p / total for p in PRIOR]
    for hour in hours:
        h = hour % 24
        scores[h] += 1.0
        scores[(h - 1) % 24] += 0.5
        scores[(h + 1) % 24] += 0.5
    return scores


def choose_hour(scores: Sequence[float], candidates: Sequence[int], point: float) -> int:
    """One of `candidates` (hours in the order they come, the first soonest): the best scored
    (the soonest of equals), or, for `point` below `EXPLORE`, the one `point` lands on."""
    if not candidates:
        raise ValueError("no hour to choose from")
    if point < EXPLORE:
        return candidates[min(int(point / EXPLORE * len(candidates)), len(candidates) - 1)]
    return max(candidates, key=lambda h: (scores[h], -candidates.index(h)))


# --- evaluation -------------------------------------------------------------------------------
# The simulator of research/ml-data.md §2(b): people with known peak hours (drawn from the
# population curve), past engagements around the peak, opens less likely the further a send is
# from it. Used by the test that holds the note's targets.


@dataclass(frozen=True, slots=True)
class Person:
    peak: int
    history: tuple[int, ...]


def population(size: int, seed: int) -> list[Person]:
    rng = random.Random(seed)
    people = []
    for _ in range(size):
        peak = rng.choices(range(24), weights=PRIOR)[0]
        count = rng.randint(0, 30)
        history = []
        for _ in range(count):
            if rng.random() < 0.2:  # an open at any hour: a weekend, a holiday, noise
                history.append(rng.randrange(24))
            else:
                history.append(round(rng.gauss(peak, 1.5)) % 24)
        people.append(Person(peak, tuple(history)))
    return people


def open_chance(send_hour: int, peak: int) -> float:
    """Falls off with the distance (in hours, around the clock) from the person's peak."""
    distance = min((send_hour - peak) % 24, (peak - send_hour) % 24)
    return 0.3 * 0.8**distance
