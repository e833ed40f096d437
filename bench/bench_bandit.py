"""Variant selection benchmark (mission stage 6), each policy beside sending evenly in the same
run: the simulation of research/ml-data.md §2(d).

    leadloop bench bandit [--repeats 200] [--sends 20000] [--batch 500]

Five variants with click rates 20, 21, 22, 23 and 25 %; each repeat sends `--sends` messages
one by one, and the counts a policy sees are refreshed every `--batch` sends. Reported: clicks
as a share of the oracle's (every message with the best variant), and how often the policy
ended on the best variant (the one it sent most; for even sending, the best observed rate).
Targets (research/ml-data.md): Thompson sampling ≥ 97 % of the oracle, best variant ≥ 0.95.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import at_least

from leadloop.personalization.bandit import POLICIES, simulate

RATES = (0.20, 0.21, 0.22, 0.23, 0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=at_least(), default=200)
    parser.add_argument("--sends", type=at_least(), default=20_000)
    parser.add_argument("--batch", type=at_least(), default=500)
    args = parser.parse_args()
    rows = []
    baseline = None
    for policy in ("uniform", *(p for p in POLICIES if p != "uniform")):
        started = time.perf_counter()
        outcomes = [
            simulate(policy, RATES, args.sends, args.batch, seed) for seed in range(args.repeats)
        ]
        share = statistics.fmean(o.clicks / o.oracle for o in outcomes)
        best = statistics.fmean(1.0 if o.picked_best else 0.0 for o in outcomes)
        baseline = share if baseline is None else baseline
        rows.append((policy, share, best, time.perf_counter() - started))
    print("| policy | clicks vs oracle | vs sending evenly | best variant chosen | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for policy, share, best, seconds in rows:
        assert baseline is not None
        print(f"| {policy} | {share:.1%} | {share / baseline:.3f} | {best:.2f} | {seconds:.1f} |")
    print(f"\n{args.repeats} repeats of {args.sends:,} sends, counts refreshed every {args.batch}.")
    print("Targets: thompson ≥ 97 % of the oracle, best variant chosen ≥ 0.95.")


if __name__ == "__main__":
    main()
