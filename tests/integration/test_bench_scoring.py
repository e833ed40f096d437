"""`leadloop bench scoring` at a tiny size: every part still runs end to end and its own checks
hold (every seeded profile decays once, through the timer path). No rate is asserted: speed is
reported by the benchmark, not tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration import benchrun

ROOT = Path(__file__).resolve().parents[2]


def table(*options: str) -> list[str]:
    return benchrun.table("scoring", *options)


def test_the_scoring_benchmark_runs_at_a_tiny_size() -> None:
    rows = table("--events", "2000", "--profiles", "300", "--samples", "3")
    assert [row.split(" | ")[0] for row in rows] == [
        "| processing with scoring, events/s",
        "| decay of 300 profiles due at once, profiles/s",
        "| event → verified webhook, p50 ms (3 samples, 1,000 ev/s background)",
        "| event → verified webhook, p99 ms",
        "| backtest replay, events/s",
    ]


def test_the_scoring_benchmark_runs_the_parts_asked_for() -> None:
    rows = table("--parts", "decay", "--profiles", "200")
    assert [row.split(" | ")[0] for row in rows] == [
        "| decay of 200 profiles due at once, profiles/s"
    ]


def test_the_rescore_part_runs_only_when_asked() -> None:
    """A changed model applied while probe events arrive: the rescore finishes, every probe
    event is written (the part waits for each), and both wait figures are numbers."""
    rows = table("--parts", "rescore", "--rescore-profiles", "300")
    assert [row.split(" | ")[0] for row in rows] == [
        "| rescore of 300 profiles (1,500 events) under 200 live events/s, profiles/s",
        "| live events' wait during it, p50 / p99 / max ms",
    ]
    assert "nan" not in rows[1], rows


def test_the_benchmark_prints_no_engine_start_up() -> None:
    """The scratch engines' start-up (a migration line per migration and engine) buried the
    table; their warnings are still shown."""
    command = [sys.executable, "-m", "leadloop", "bench", "scoring", "--parts", "decay"]
    done = subprocess.run(
        [*command, "--profiles", "100"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout + done.stderr
    assert "migration" not in printed and " INFO " not in printed, done.stderr[-3000:]
    assert "WARNING leadloop: playbook:" in done.stderr
    assert "| decay of 100 profiles due at once, profiles/s |" in done.stdout
