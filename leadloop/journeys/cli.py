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
from leadloop.files import read_limited, reason
from leadloop.ingest.model import MAX_REQUEST_BYTES

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


# The profile becomes one identify message and the events a few thousand at most: files larger
# than these are the wrong file, refused before they are read whole.
PROFILE_LIMIT = MAX_REQUEST_BYTES
EVENTS_LIMIT = 10 * 1024 * 1024


def _read_profile(path: str) -> dict[str, Any]:
    data = _decode(_read("--profile", path, PROFILE_LIMIT), f"--profile {path}")
    if not isinstance(data, dict):
        raise LeadloopError(f"--profile {path}: expected a JSON object like {PROFILE_SHAPE}")
    return data


def _read_events(path: str | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    text = _read("--events", path, EVENTS_LIMIT).strip()
    if not text:
        return []
    if text.startswith("["):
        data = _decode(text, f"--events {path}")
    else:  # JSON lines: an error names the line of the file, not of the line alone
        data = [
            _decode(line, f"--events {path}:{number}")
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        ]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise LeadloopError(f"--events {path}: expected a list of JSON objects")
    return data


def _read(option: str, path: str, limit: int) -> str:
    if not path:  # `Path("")` is the current folder: "Is a directory" would name nothing
        raise LeadloopError(f"{option}: no file given (it is empty)")
    try:
        # utf-8-sig: a byte order mark, as some editors write, is not part of the JSON.
        return read_limited(Path(path), limit).decode("utf-8-sig")
    except (OSError, ValueError) as error:  # UnicodeDecodeError and FileTooLarge included
        raise LeadloopError(f"cannot read {option} {path}: {reason(error)}") from error


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _decode(text: str, where: str) -> Any:
    """JSON as the tracking API reads it: no NaN or Infinity, nesting a clear error."""
    try:
        return json.loads(text, parse_constant=_constant)
    except RecursionError as error:
        raise LeadloopError(f"cannot read {where}: nested too deeply") from error
    except ValueError as error:
        raise LeadloopError(f"cannot read {where}: {error}") from error


MAX_OPTION = 100
"""Longer than any time or duration: the parse error would echo the whole value back."""


def _option(name: str, value: str, parse: Callable[[str], float]) -> float:
    if len(value) > MAX_OPTION:
        raise LeadloopError(f"{name}: at most {MAX_OPTION} characters, got {len(value):,}")
    try:
        return parse(value)
    except ValueError as error:
        raise LeadloopError(f"{name}: {error}") from error


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.clock import SystemClock
    from leadloop.journeys.simulate import render, seconds, simulate

    profile = _read_profile(args.profile)
    events = _read_events(args.events)
    if not args.playbook:  # the engine reads an empty one as none: nothing could enter
        raise LeadloopError("--playbook: no playbook path given (it is empty)")
    start = SystemClock().now()
    if args.start is not None:  # an empty --start was now
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
