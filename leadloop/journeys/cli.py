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


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "simulate",
        help="run one profile through the journeys on a manual clock, changing nothing",
    )
    p.add_argument("--playbook", required=True, help="playbook file or folder")
    p.add_argument("--profile", required=True, help='JSON file: {"userId": ..., "traits": {...}}')
    p.add_argument(
        "--events",
        default=None,
        help='JSON list or JSON lines of Segment messages; "wait": "72h" moves the clock first',
    )
    p.add_argument("--start", default=None, help="start time, ISO 8601 (default: now)")
    p.add_argument("--horizon", default="30d", help="run timers this long after the last event")
    p.set_defaults(handler=cmd_simulate)


def _read_events(path: str | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        data = json.loads(text)
    else:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not all(isinstance(item, dict) for item in data):
        raise LeadloopError(f"{path}: expected a list of JSON objects")
    return data  # type: ignore[no-any-return]


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.clock import SystemClock
    from leadloop.journeys.simulate import render, seconds, simulate

    try:
        profile = json.loads(Path(args.profile).read_text(encoding="utf-8"))
        events = _read_events(args.events)
    except (OSError, ValueError) as error:
        raise LeadloopError(f"cannot read the simulation input: {error}") from error
    start = SystemClock().now()
    if args.start:
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00")).timestamp()
    result = simulate(args.playbook, profile, events, start, seconds(args.horizon))
    for line in render(result):
        print(line)
    return 0
