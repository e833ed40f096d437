"""`leadloop metrics`: the campaign and funnel metrics of `GET /api/v1/metrics`, on the database
with no server running; `leadloop spend import`: ad spend from the platforms' exports, for CAC
and ROAS."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadloop.config import Settings
from leadloop.errors import LeadloopError
from leadloop.files import read_limited, reason

if TYPE_CHECKING:
    from leadloop.analytics.queries import Conn
    from leadloop.playbook.model import Playbook

SPEND_LIMIT = 20 * 1024 * 1024
"""Far above a year of daily spend per campaign; a larger file is the wrong file."""


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from leadloop.cli import label

    group = sub.add_parser("spend", help="import ad spend (for CAC and ROAS in the metrics)")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "import",
        help="a CSV of date,source,campaign,currency,amount; a source's day imported again is replaced",
    )
    db_arg(p)
    p.add_argument(
        "file", help="the CSV export (header: date, source, amount, currency[, campaign])"
    )
    p.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    p.set_defaults(handler=cmd_spend_import)

    p = sub.add_parser(
        "metrics",
        help="campaign and funnel metrics over a window, as GET /api/v1/metrics gives them",
    )
    db_arg(p)
    for bound, default in (("since", "30 days before --until"), ("until", "now")):
        p.add_argument(
            f"--{bound}",
            help="a date (2026-11-01, UTC, its whole day), a date and time with a zone, or "
            f"epoch seconds (default: {default}; one bound alone: the 30 days from or to it)",
        )
    p.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    p.add_argument(
        "--json", action="store_true", help="the JSON body GET /api/v1/metrics answers, as it is"
    )
    p.set_defaults(handler=cmd_metrics)


def cmd_spend_import(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.analytics import queries
    from leadloop.analytics.spend import SpendFileError, parse_spend
    from leadloop.app import open_existing
    from leadloop.clock import SystemClock

    if not args.file:  # `Path("")` is the current folder: "Is a directory" would name nothing
        raise LeadloopError("no file given (it is empty): name the CSV export")
    try:
        text = read_limited(Path(args.file), SPEND_LIMIT).decode("utf-8-sig")
    except (OSError, ValueError) as error:  # UnicodeDecodeError and FileTooLarge included
        raise LeadloopError(f"cannot read {args.file}: {reason(error)}") from error
    try:
        rows = parse_spend(text, args.file)
    except SpendFileError as error:
        raise LeadloopError(f"nothing imported\n{error}") from error
    conn = open_existing(settings.database_url, args.workspace)
    try:
        with conn.transaction():
            count = queries.import_spend(conn, args.workspace, rows, SystemClock().now())
    finally:
        conn.close()
    days = sorted({r.day for r in rows})
    span = f" from {days[0]} to {days[-1]}" if days else ""
    print(f"imported {count} spend rows{span} into workspace {args.workspace!r}")
    return 0


def cmd_metrics(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.analytics.report import conversion_windows, funnel_stages, metrics_report
    from leadloop.analytics.table import render_report
    from leadloop.analytics.window import WindowError, window
    from leadloop.app import open_existing
    from leadloop.clock import SystemClock

    now = SystemClock().now()
    try:
        since, until = window(args.since, args.until, now)
    except WindowError as error:
        raise LeadloopError(f"--{error.name}: {error.message}") from None
    conn = open_existing(settings.database_url, args.workspace)
    try:
        # One snapshot: a running engine's commits between two figures would set messages of
        # one moment against revenue of another.
        with conn.snapshot():
            playbook = _live_playbook(conn, args.workspace)
            body = metrics_report(
                conn,
                args.workspace,
                since,
                until,
                now,
                funnel_stages(playbook),
                conversion_windows(playbook),
            )
    finally:
        conn.close()
    if args.json:
        # Written as the API writes its JSON responses, so the two compare byte for byte.
        print(json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
    else:
        print(render_report(body, args.workspace))
    return 0


def _live_playbook(conn: Conn, workspace: str) -> Playbook | None:
    """The workspace's newest applied playbook, as an engine loads it: its scoring models'
    stages make the funnel and its journeys' windows count conversions. One that does not
    load in this shell (a `${VAR}` the engine's environment sets) is an error, not a report
    with no funnel that reads as if nobody moved."""
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    applied = store.latest(conn, workspace)
    if applied is None:
        return None
    try:
        return store.build(applied.sources)
    except PlaybookError as error:
        raise LeadloopError(
            f"playbook #{applied.id} of workspace {workspace!r} does not load here ({error}); "
            "the funnel and the journeys need it: run with the environment the engine has"
        ) from error
