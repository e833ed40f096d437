"""Run one profile through the journeys on a manual clock, in a throw-away SQLite database.

Nothing touches the real database and nothing is delivered: the outbox has no senders. The
result is the profile's path through each journey with times, and every send decision of the
contact policy (queued, rerouted, deferred, suppressed) with its reason.

Channels are simulated as configured, as the live engine would run them here: a channel whose
settings are missing (an unset `${ENV}`) is disabled, and a send routed to it is suppressed.
`all_channels=True` pretends every channel is configured, to try the journeys' logic alone.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadloop.app import Engine
from leadloop.channels.config import channels_config
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.errors import LeadloopError
from leadloop.ingest import parse
from leadloop.ingest.model import Rejected
from leadloop.journeys import queries
from leadloop.journeys.service import JourneyStage
from leadloop.log import timers as timer_rows
from leadloop.scoring.service import ScoringStage
from leadloop.scratch import quiet_engine_logs

# ASCII: `\d` also matches other scripts' digits, and "٣d" read as 3 days.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.ASCII)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def seconds(value: Any) -> float:
    """`90`, `"30m"`, `"72h"`, `"2d"` → seconds (finite, not negative: time moves forward)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < math.inf:
            raise ValueError(f"expected a duration of 0 or more seconds, got {value!r}")
        return float(value)
    found = _DURATION.match(str(value))
    if not found:
        raise ValueError(f"expected a duration like 72h, got {value!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


@dataclass(frozen=True)
class Simulation:
    profile_id: str
    journeys: list[dict[str, Any]]
    sends: list[dict[str, Any]]
    disabled: dict[str, str]
    """Channel → why it is off in this simulation (empty with `all_channels`)."""
    not_entered: list[dict[str, Any]] = field(default_factory=list)


def simulate(
    playbook: str,
    profile: dict[str, Any],
    events: Iterable[dict[str, Any]],
    start: float,
    horizon: float = 30 * 86400.0,
    all_channels: bool = False,
) -> Simulation:
    """Apply `playbook` in a temporary database, identify the profile, send each event (an
    event may carry `"wait": "72h"` to move the clock first), then let every timer due within
    `horizon` after the last event fire. Channels are the configured ones (the live engine's),
    or every channel with `all_channels`."""
    user = str(profile.get("userId") or "simulated")
    identify = {"type": "identify", "userId": user, "traits": profile.get("traits", {})}
    _check(identify, start, "profile: ")
    messages = _checked(events, user, start)
    # The scratch engine's start-up (migrations of a database deleted on return) is not the
    # result; its warnings (a channel disabled here) are part of it.
    with quiet_engine_logs(), tempfile.TemporaryDirectory(prefix="leadloop-simulate-") as folder:
        url = f"sqlite:///{Path(folder) / 'simulate.db'}"
        clock = ManualClock(start)
        engine = Engine(
            Settings(database_url=url, playbook=playbook),
            clock=clock,
            manual_clock=True,
            run_processor=False,
        )

        def channels(ws: str) -> Any:
            return channels_config(engine.playbooks.get(ws))

        journeys = JourneyStage(
            engine.playbooks.get,
            channels_enabled=None if all_channels else lambda ws: channels(ws).enabled_channels(),
            known_templates=lambda ws: channels(ws).template_names(),
        )
        engine.processor.set_stages([ScoringStage(engine.scoring_models), journeys])
        engine.dispatcher.senders.clear()  # nothing leaves a simulation
        engine.start()
        conn = engine._connect()
        try:

            def send(message: dict[str, Any]) -> None:
                accepted = parse.parse_request({"batch": [message]}, None, received_at=clock.now())
                if not isinstance(accepted, list):
                    raise ValueError(f"event rejected: {accepted}")
                engine.writer.append("default", accepted).result(timeout=30)
                while engine.processor.run_once(conn):
                    pass

            def run_until(until: float) -> None:
                while True:
                    due = timer_rows.next_due(conn)
                    if due is None or due > until:
                        break
                    clock.set(max(due, clock.now()))
                    engine.timers.fire_now()
                    while engine.processor.run_once(conn):
                        pass
                clock.set(max(until, clock.now()))

            send(identify)
            for wait, message in messages:
                if wait is not None:
                    run_until(clock.now() + wait)
                send(message)
            run_until(clock.now() + horizon)
            pid = conn.execute(
                "SELECT profile_id FROM identities WHERE type = 'user_id' AND value = ?", (user,)
            )[0][0]
            return Simulation(
                str(pid),
                queries.profile_journeys(conn, "default", str(pid)),
                queries.sends(conn, "default", str(pid)),
                {} if all_channels else dict(channels("default").disabled),
                queries.not_entered(conn, "default", str(pid)),
            )
        finally:
            conn.close()
            engine.stop()


def _checked(
    events: Iterable[dict[str, Any]], user: str, start: float
) -> list[tuple[float | None, dict[str, Any]]]:
    """(wait in seconds, message) per event, each checked as the tracking API would before
    anything runs: a bad event is an error naming it, not a failure half-way through."""
    checked: list[tuple[float | None, dict[str, Any]]] = []
    at = start
    for number, event in enumerate(events, 1):
        message = dict(event)
        wait = message.pop("wait", None)
        try:
            delay = None if wait is None else seconds(wait)
        except ValueError as error:
            raise LeadloopError(f"event {number}: wait: {error}") from error
        message.setdefault("userId", user)
        # Checked at the time it will be sent: waits can move the clock past what the
        # tracking API accepts, which must fail here and not half-way through the run.
        at += delay or 0.0
        _check(message, at, f"event {number}: ")
        checked.append((delay, message))
    return checked


def _check(message: dict[str, Any], start: float, label: str) -> None:
    """The tracking API's checks of one message; a rejection names `label` (the input at fault)."""
    found = parse.parse_message(message, None, received_at=start, sent_at=None, index=label)
    if isinstance(found, Rejected):
        raise LeadloopError(found.message)


def _time(at: float | None) -> str:
    if at is None:
        return "-"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(result: Simulation) -> list[str]:
    lines = [f"profile {result.profile_id}"]
    if not result.journeys:
        lines.append("  entered no journey")
    for skipped in result.not_entered:
        lines.append(
            f"journey {skipped['journey']}: not entered at {_time(skipped['at'])} — "
            f"{skipped['reason']}"
        )
    for journey in result.journeys:
        lines.append(
            f"journey {journey['journey']} (version {journey['version'][:12]}): "
            f"{journey['status']}{' — ' + journey['reason'] if journey['reason'] else ''}"
        )
        for line in journey["path"]:
            step = line["step"] or "-"
            detail = f"  {line['detail']}" if line["detail"] else ""
            lines.append(f"  {_time(line['at'])}  {step:<20} {line['kind']:<12}{detail}")
    if result.sends:
        lines.append("sends")
    for item in result.sends:
        until = f" until {_time(item['until'])}" if item["until"] else ""
        reason = f" ({item['reason']})" if item["reason"] else ""
        channel = item["channel"] or item["requested_channel"]
        lines.append(
            f"  {_time(item['at'])}  {item['journey']}/{item['step']}  {channel} "
            f"{item['template']}: {item['outcome']}{until}{reason}"
        )
    reasons = " ".join(str(i["reason"]) for i in result.sends)
    off = [c for c in sorted(result.disabled) if f"{c}: channel not enabled" in reasons]
    for channel in off:
        lines.append(f"note: {channel} is disabled here ({result.disabled[channel]})")
    if off:
        lines.append("note: --all-channels simulates as if every channel were configured")
    return lines
