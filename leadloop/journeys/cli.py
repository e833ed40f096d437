"""`leadloop simulate`: one profile through the journeys on a manual clock, changing nothing."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from leadloop.config import Settings
from leadloop.errors import LeadloopError

PROFILE_SHAPE = '{"userId": ..., "traits": {...}}'


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "simulate",
        help="run one profile through the journeys on a manual clock, changing nothing",
    )
    p.add_argument("--playbook", required=True, help="playbook file or folder")
    p.add_argument("--profile", required=True, help=f"JSON file: {PROFILE_SHAPE}")
    p.add_argument(
        "--events",
        default=None,
        help='JSON list or JSON lines of Segment messages; "wait": "72h" moves the clock first',
    )
    p.add_argument("--start", default=None, help="start time, ISO 8601 (default: now)")
    p.add_argument("--horizon", default="30d", help="run timers this long after the last event")
    p.add_argument(
        "--all-channels",
        action="store_true",
        help="pretend every channel is configured (default: as configured here, like the engine)",
    )
    p.set_defaults(handler=cmd_simulate)


def _read_profile(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        raise LeadloopError(f"cannot read --profile {path}: {error}") from error
    if not isinstance(data, dict):
        raise LeadloopError(f"--profile {path}: expected a JSON object like {PROFILE_SHAPE}")
    return data


def _read_events(path: str | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
        if not text:
            return []
        if text.startswith("["):
            data = json.loads(text)
        else:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError) as error:
        raise LeadloopError(f"cannot read --events {path}: {error}") from error
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise LeadloopError(f"--events {path}: expected a list of JSON objects")
    return data


def _option(name: str, value: str, parse: Callable[[str], float]) -> float:
    try:
        return parse(value)
    except ValueError as error:
        raise LeadloopError(f"{name}: {error}") from error


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.clock import SystemClock
    from leadloop.journeys.simulate import render, seconds, simulate

    profile = _read_profile(args.profile)
    events = _read_events(args.events)
    start = SystemClock().now()
    if args.start:
        start = _option(
            "--start",
            args.start,
            lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp(),
        )
    horizon = _option("--horizon", args.horizon, seconds)
    result = simulate(args.playbook, profile, events, start, horizon, args.all_channels)
    for line in render(result):
        print(line)
    return 0
