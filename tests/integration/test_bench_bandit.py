"""`leadloop bench bandit` at a tiny size: the script runs end to end and prints a row per
policy. No rate is asserted here: the policies' figures are the benchmark's to report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_bandit_benchmark_runs_at_a_tiny_size() -> None:
    command = [sys.executable, "-m", "leadloop", "bench", "bandit", "--repeats", "2"]
    done = subprocess.run(
        [*command, "--sends", "1000", "--batch", "100"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| uniform",
        "| thompson",
        "| test_then_exploit",
    ]
    bad = subprocess.run([*command, "--sends", "0"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "--sends: expected at least 1" in bad.stderr
