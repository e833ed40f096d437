"""`leadloop simulate`: one profile through the journeys on a manual clock, changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")


def simulate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadloop", "simulate", "--playbook", PLAYBOOK, *args],
        env={**os.environ, "LEADLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/real.db"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_seed_journey_is_simulated_without_touching_the_database(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"userId": "sim-1", "traits": {"email": "sim@acme.test"}}))
    events = tmp_path / "events.json"
    events.write_text(
        json.dumps([{"type": "page", "userId": "sim-1", "properties": {"path": "/pricing"}}])
    )
    out = simulate(
        tmp_path,
        "--profile",
        str(profile),
        "--events",
        str(events),
        "--start",
        "2026-11-02T10:00:00Z",
        "--horizon",
        "10d",
    )
    assert out.returncode == 0, out.stderr
    assert "lead_nurture" in out.stdout and "guide" in out.stdout
    # The guide's link is never clicked: after 72 hours the journey switches channel; with
    # no phone and no Instagram id the profile goes to the retargeting audience.
    assert "ugc_retargeting" in out.stdout
    assert not (tmp_path / "real.db").exists()


def test_bad_simulation_input_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    out = simulate(tmp_path, "--profile", str(broken))
    assert out.returncode == 2 and f"cannot read --profile {broken}" in out.stderr
    out = simulate(tmp_path, "--profile", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "cannot read --profile" in out.stderr
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"userId": "x"}))
    events = tmp_path / "events.json"
    events.write_text(json.dumps([1, 2]))
    out = simulate(tmp_path, "--profile", str(profile), "--events", str(events))
    assert out.returncode == 2 and "expected a list of JSON objects" in out.stderr


def test_bad_events_and_options_are_named_before_anything_runs(tmp_path: Path) -> None:
    """Each mistake is one line naming the input at fault and exit status 2, never a traceback
    from half-way through the simulation."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"userId": "x"}))

    written: list[Path] = []

    def events(*items: object) -> str:
        path = tmp_path / f"events-{len(written)}.json"
        path.write_text(json.dumps(list(items)))
        written.append(path)
        return str(path)

    cases = [
        (("--events", events({"type": "page"}, {"type": "bogus"})), "event 2: type must be"),
        (("--events", events({"type": "track", "event": "x", "wait": "soon"})), "event 1: wait"),
        (("--events", events({"type": "track", "properties": [1]})), "event 1: properties"),
        (("--start", "yesterday"), "--start"),
        (("--horizon", "forever"), "--horizon"),
    ]
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(128, 256)))
    cases.append((("--events", str(binary)), f"cannot read --events {binary}"))
    for args, words in cases:
        out = simulate(tmp_path, "--profile", str(profile), *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert words in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr and not out.stdout, args
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    out = simulate(tmp_path, "--profile", str(listed))
    assert out.returncode == 2 and "expected a JSON object" in out.stderr
    profile.write_text(json.dumps({"userId": "x", "traits": [1]}))
    out = simulate(tmp_path, "--profile", str(profile))
    assert out.returncode == 2 and "profile: traits must be an object" in out.stderr
