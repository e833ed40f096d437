"""`leadloop bench conversions` at a tiny size: the benchmark still runs end to end (both
paths, the whole-engine table) and its own checks hold (every event accepted once by the fake).
No rate is asserted: speed is reported by the benchmark, not tested."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_conversions_benchmark_runs_at_a_tiny_size() -> None:
    command = [sys.executable, "-m", "leadloop", "bench", "conversions"]
    options = ["--seconds", "0", "--events", "1000", "--engine-people", "300"]
    done = subprocess.run(
        [*command, *options], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "1,000 Purchase conversions per run, 1 round(s)" in out
    assert "| facebook-business `EventRequest.execute` | 1 |" in out
    assert "| leadloop through the SQLite outbox (rows committed, claimed, sent, recorded) |" in out
    assert "Through the engine (SQLite, example playbook), 300 people" in out
    assert "| dispatcher: claim, send to the fake Meta, record |" in out
