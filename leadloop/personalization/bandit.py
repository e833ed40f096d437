"""Thompson sampling over a send step's variants: each variant's click rate is a Beta posterior
over what the log has shown so far (sends, and messages clicked at least once), one draw is taken
from each, and the highest draw wins.

Deterministic: the draws come from a generator seeded by the decision's own key (journey, step,
profile), so replaying the log, which folds the same sends and clicks in the same order, makes
the same choice for everyone. A pure function of the counts and the key.

Thompson sampling rather than a fixed test-then-exploit split: on the simulation in
`research/ml-data.md` (five variants at 20–25 %), it keeps about 97 % of the oracle's clicks,
where sending evenly keeps 89 % and a 50 % test before exploiting 94 % (`bench/bench_bandit.py`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from leadloop.digest import sha256_hex


@dataclass(frozen=True, slots=True)
class Arm:
    sends: int
    clicks: int

    def posterior(self) -> tuple[float, float]:
        """Beta(1 + clicks, 1 + misses): a uniform prior, so a variant nobody got yet is
        as likely to be tried as any."""
        misses = max(self.sends - self.clicks, 0)
        return 1.0 + max(self.clicks, 0), 1.0 + misses


def thompson(arms: Sequence[Arm], *key: str) -> int:
    """The index of the arm whose draw is highest; ties go to the first."""
    rng = random.Random(int(sha256_hex("\x1f".join(("thompson", *key)))[:16], 16))
    best, best_draw = 0, -1.0
    for index, arm in enumerate(arms):
        alpha, beta = arm.posterior()
        draw = rng.betavariate(alpha, beta)
        if draw > best_draw:
            best, best_draw = index, draw
    return best


def leader(arms: Sequence[Arm]) -> int:
    """The arm with the highest posterior mean: the one the bandit believes best now."""
    means = [a / (a + b) for a, b in (arm.posterior() for arm in arms)]
    return max(range(len(arms)), key=lambda i: means[i])


# --- evaluation ------------------------------------------------------------------------------
# The simulation of research/ml-data.md §2(d): variants with known click rates, sends one after
# another, and the counts the policy sees refreshed every `batch` sends (clicks come back late,
# as they do from real inboxes). Used by `bench/bench_bandit.py` and its test.

POLICIES = ("thompson", "uniform", "test_then_exploit")


@dataclass(frozen=True, slots=True)
class Outcome:
    clicks: int
    oracle: float
    """Clicks expected from sending every message with the best variant."""
    picked_best: bool
    """Whether the variant the policy believed best at the end is the best one."""


def simulate(policy: str, rates: Sequence[float], sends: int, batch: int, seed: int) -> Outcome:
    world = random.Random(seed)
    seen = [Arm(0, 0) for _ in rates]
    live = [[0, 0] for _ in rates]
    clicks = 0
    for n in range(sends):
        if n % batch == 0:
            seen = [Arm(s, c) for s, c in live]
        if policy == "thompson":
            arm = thompson(seen, str(seed), str(n))
        elif policy == "uniform" or (policy == "test_then_exploit" and n < sends // 2):
            arm = n % len(rates)
        else:
            arm = leader(seen)
        clicked = world.random() < rates[arm]
        live[arm][0] += 1
        live[arm][1] += int(clicked)
        clicks += int(clicked)
    final = [Arm(s, c) for s, c in live]
    best = max(range(len(rates)), key=lambda i: rates[i])
    if policy == "uniform":
        picked = leader(final) == best
    else:
        picked = max(range(len(rates)), key=lambda i: final[i].sends) == best
    return Outcome(clicks, sends * rates[best], picked)
