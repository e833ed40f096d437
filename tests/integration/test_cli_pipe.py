"""A command whose reader goes away (`leadloop ... | head`) ends quietly, not in a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    command = [sys.executable, "-m", "leadloop", "playbook", "validate", "examples/playbook.yaml"]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # the reader is gone before the command writes its first line
    errors = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(60) == 141
    assert errors == ""  # no traceback, at the write or at exit
