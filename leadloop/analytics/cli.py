"""`leadloop spend import`: ad spend from the platforms' exports, for CAC and ROAS."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leadloop.config import Settings
from leadloop.errors import LeadloopError
from leadloop.files import read_limited

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


def cmd_spend_import(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.analytics import queries
    from leadloop.analytics.spend import SpendFileError, parse_spend
    from leadloop.app import open_existing
    from leadloop.clock import SystemClock

    try:
        text = read_limited(Path(args.file), SPEND_LIMIT).decode("utf-8-sig")
    except (OSError, ValueError) as error:  # UnicodeDecodeError and FileTooLarge included
        raise LeadloopError(f"cannot read {args.file}: {error}") from error
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
