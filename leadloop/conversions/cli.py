"""`leadloop conversions list|replay`: inspect conversion deliveries, re-drive dead ones."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from leadloop.cli import label
from leadloop.clock import SystemClock
from leadloop.config import Settings
from leadloop.errors import LeadloopError


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("conversions", help="inspect conversion deliveries and re-drive dead ones")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = psub.add_parser("list", help="conversion rows per destination and their state")
    ls.add_argument(
        "--status",
        choices=["pending", "delivered", "dead", "skipped"],
        default=None,
        help="only this state",
    )
    ls.add_argument("--destination", type=label, default=None, help="only this destination id")
    ls.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    db_arg(ls)
    ls.set_defaults(handler=cmd_list)
    rp = psub.add_parser(
        "replay", help="re-drive dead conversions with a fresh attempt budget (same event ids)"
    )
    rp.add_argument("--destination", type=label, default=None, help="only this destination id")
    rp.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    db_arg(rp)
    rp.set_defaults(handler=cmd_replay)


def _conn(settings: Settings, workspace: str) -> Any:
    from leadloop.app import open_existing

    return open_existing(settings.database_url, workspace)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.conversions import queries

    conn = _conn(settings, args.workspace)
    try:
        totals = queries.summary(conn, args.workspace)
        rows = queries.list_conversions(
            conn, args.workspace, status=args.status, destination=args.destination, limit=1000
        )
    finally:
        conn.close()
    for name, entry in totals["destinations"].items():
        if args.destination and name != args.destination:
            continue
        coverage = entry["coverage"]
        print(
            f"{name}: sent {entry['sent']} · pending {entry['pending']} · failed "
            f"{entry['failed']} · skipped {entry['skipped']} · email {coverage['email_hash']:.0%} "
            f"phone {coverage['phone_hash']:.0%} click id {coverage['click_id']:.0%} "
            f"browser id {coverage['browser_id']:.0%}"
        )
        for reason in entry["skipped_reasons"]:
            print(f"  skipped {reason['count']}×: {reason['reason']}")
        for reason in entry["failed_reasons"]:
            print(f"  failed {reason['count']}×: {reason['reason']}")
    for row in rows:
        print(
            f"#{row['id']} {row['destination']} {row['idempotency_key']} {row['status']} "
            f"attempts={row['attempts']} {row['last_error'] or ''}".rstrip()
        )
    print(f"{len(rows)} row(s)")
    return 0


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.conversions import queries

    conn = _conn(settings, args.workspace)
    try:
        if args.destination:
            # A typo would otherwise re-drive nothing and look like "no dead letters".
            known = sorted(queries.summary(conn, args.workspace)["destinations"])
            if args.destination not in known:
                raise LeadloopError(
                    f"no conversions for destination {args.destination!r} in workspace "
                    f"{args.workspace} (destinations with conversions: {', '.join(known) or 'none'})"
                )
        with conn.transaction():
            count = queries.replay_dead(conn, args.workspace, SystemClock().now(), args.destination)
    finally:
        conn.close()
    where = f" for {args.destination}" if args.destination else ""
    print(f"re-driving {count} dead conversion(s){where}")
    return 0
