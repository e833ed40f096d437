"""`leadloop simulate`: one profile through the journeys on a manual clock, changing nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.contract.conftest import CHANNEL_ENV

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")


def simulate(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, verbose: bool = False
) -> subprocess.CompletedProcess[str]:
    """`leadloop simulate` with no channel settings in its environment but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEADLOOP_")}
    command = [sys.executable, "-m", "leadloop", *(["--verbose"] if verbose else []), "simulate"]
    return subprocess.run(
        [*command, "--playbook", PLAYBOOK, *args],
        env={**clean, **(env or {}), "LEADLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/real.db"},
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


def test_only_the_result_and_the_warnings_are_printed(tmp_path: Path) -> None:
    """The scratch engine's start-up (a migration line per migration, `playbook ... is live`)
    is not shown; its warnings are (a disabled channel changes what the simulation means),
    and with --verbose everything is, as asked."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"userId": "sim-1", "traits": {"email": "sim@acme.test"}}))
    out = simulate(tmp_path, "--profile", str(profile), "--start", "2026-11-02T10:00:00Z")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("profile ")
    printed = out.stdout + out.stderr
    assert "migration" not in printed and " INFO " not in printed and "is live" not in printed
    assert "WARNING leadloop.channels: channels:" in out.stderr
    assert "email is disabled" in out.stderr
    verbose = simulate(
        tmp_path, "--profile", str(profile), "--start", "2026-11-02T10:00:00Z", verbose=True
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO leadloop: created the database schema" in verbose.stderr
    assert verbose.stdout == out.stdout


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


def quiet_hours_lead(tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> str:
    """A profile with an email becomes a lead at 22:30 UTC, inside the example policy's quiet
    hours (21:00-08:00 UTC); the simulation's output."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"userId": "sim-q", "traits": {"email": "q@acme.test"}}))
    events = tmp_path / "events.json"
    events.write_text(json.dumps([{"type": "page", "properties": {"path": "/pricing"}}]))
    out = simulate(
        tmp_path,
        *("--profile", str(profile), "--events", str(events)),
        *("--start", "2026-11-02T22:30:00Z", "--horizon", "10d", *options),
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


DEFERRED = [
    "  2026-11-02 22:30:00 UTC  send_guide           deferred      "
    "quiet hours in UTC until 2026-11-03 08:00 UTC",
    "  2026-11-03 08:00:00 UTC  send_guide           resumed       deferral over",
    "  2026-11-03 08:00:00 UTC  send_guide           send          email guide",
    "  2026-11-02 22:30:00 UTC  lead_nurture/send_guide  email guide: deferred until "
    "2026-11-03 08:00:00 UTC (quiet hours in UTC until 2026-11-03 08:00 UTC)",
    "  2026-11-03 08:00:00 UTC  lead_nurture/send_guide  email guide: queued",
]


def test_a_send_in_quiet_hours_is_deferred_with_its_time_and_reason(tmp_path: Path) -> None:
    """With the channels configured, as the engine would run them: the guide waits for 08:00."""
    lines = quiet_hours_lead(tmp_path, env=CHANNEL_ENV).splitlines()
    assert [line for line in DEFERRED if line not in lines] == []
    assert not any(line.startswith("note:") for line in lines)


def test_unconfigured_channels_are_disabled_as_in_the_engine(tmp_path: Path) -> None:
    """No channel settings: the engine would send nothing, and the simulation says so."""
    lines = quiet_hours_lead(tmp_path).splitlines()
    assert (
        "  2026-11-02 22:30:00 UTC  send_guide           suppressed    "
        "no channel can carry it: email: channel not enabled → wait_click"
    ) in lines
    assert not any("deferred" in line or "queued" in line for line in lines)
    assert "note: email is disabled here (smtp_url, from not set)" in lines
    assert "note: whatsapp is disabled here (token, phone_number_id not set)" in lines
    assert lines[-1] == "note: --all-channels simulates as if every channel were configured"


def test_all_channels_pretends_every_channel_is_configured(tmp_path: Path) -> None:
    lines = quiet_hours_lead(tmp_path, "--all-channels").splitlines()
    assert [line for line in DEFERRED if line not in lines] == []
    assert not any(line.startswith("note:") for line in lines)


def test_a_segment_entered_by_silence_is_simulated_at_the_instant_it_is_entered(
    tmp_path: Path,
) -> None:
    """The visit leaves the 30-day window with no event after it: the simulation shows the
    entry then, as the engine makes it, not at an event that never comes."""
    from leadloop.journeys.simulate import render
    from leadloop.journeys.simulate import simulate as run
    from tests.contract.test_journeys_seed import playbook_with_journeys
    from tests.contract.test_journeys_segment_time import WINBACK

    start = 1_800_000_000.0
    result = run(
        playbook_with_journeys(tmp_path, WINBACK),
        {"userId": "quiet", "traits": {"email": "quiet@acme.test"}},
        [{"type": "track", "event": "Visited"}],
        start,
        horizon=60 * 86400.0,
        all_channels=True,
    )
    [journey] = result.journeys
    assert journey["journey"] == "winback"
    entered = journey["path"][0]
    assert entered["kind"] == "entered"
    assert start + 30 * 86400 < entered["at"] < start + 30 * 86400 + 1e-3
    assert [s["template"] for s in result.sends] == ["winback"]
    # 1_800_000_000 is 2027-01-15 08:00 UTC: thirty days on, the printed path enters then.
    assert any("2027-02-14 08:00:00 UTC" in line and "entered" in line for line in render(result))


def test_a_score_crossing_reached_by_fading_is_simulated_at_the_instant_it_is_reached(
    tmp_path: Path,
) -> None:
    """The download's 15 points halve every 10 days and fall under 5 with no event after
    them: the `score` entry is simulated then, as the engine enters it."""
    from leadloop.journeys.simulate import simulate as run
    from tests.contract.test_journeys_score_fading import CROSSINGS
    from tests.contract.test_journeys_segment_time import FADED_AFTER, fading_playbook

    start = 1_800_000_000.0
    result = run(
        fading_playbook(tmp_path, CROSSINGS),
        {"userId": "fading", "traits": {"email": "fading@acme.test"}},
        [{"type": "track", "event": "Lead Magnet Downloaded"}],
        start,
        horizon=60 * 86400.0,
        all_channels=True,
    )
    entered = {j["journey"]: j["path"][0] for j in result.journeys}
    assert entered["hot"]["at"] == start  # the download itself crosses `gte 10`
    assert start + FADED_AFTER < entered["cooled"]["at"] < start + FADED_AFTER + 1
    assert [s["template"] for s in result.sends] == ["hot", "cooled"]
