"""Running a benchmark at a tiny size from the tests, as `leadloop bench NAME` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def table(bench: str, *options: str) -> list[str]:
    """The rows of the benchmark's result table, after its header."""
    command = [sys.executable, "-m", "leadloop", "bench", bench, *options]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if line.startswith("| ")][2:]
