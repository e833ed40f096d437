"""`leadloop events parked|redrive|park-current`: the events the processor set aside,
processing them again, and parking the one it holds at (docs/decisions/0006-parked-events.md)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from leadloop.cli import label, row_id
from leadloop.clock import SystemClock, monotonic
from leadloop.config import Settings, whole_number
from leadloop.errors import LeadloopError
from leadloop.log import park

WAIT_LIMIT = 3600


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "events", help="events set aside because processing them failed, and re-driving them"
    )
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = psub.add_parser(
        "parked", help="list parked events: which event, why it failed, how many attempts"
    )
    ls.add_argument("--workspace", type=label, default=None, help="only this workspace's")
    ls.add_argument("--json", action="store_true", help="as JSON, tracebacks included")
    db_arg(ls)
    ls.set_defaults(handler=cmd_parked)
    rd = psub.add_parser(
        "redrive",
        help="process parked events again (after those that followed them); a running engine "
        "does it, and deletes the row of each one that succeeds",
    )
    which = rd.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=row_id, help="its id from `events parked`")
    which.add_argument("--all", action="store_true", help="every parked event")
    _wait_arg(rd, 30, "the engine's outcome")
    db_arg(rd)
    rd.set_defaults(handler=cmd_redrive)
    pc = psub.add_parser(
        "park-current",
        help="park the event the processor holds at (when parking stopped being rare, a "
        "failing event is retried in place instead): only if that one event is at fault",
    )
    _wait_arg(pc, 60, "the engine to park it")
    db_arg(pc)
    pc.set_defaults(handler=cmd_park_current)


def _wait_arg(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    parser.add_argument(
        "--wait",
        type=seconds,
        default=default,
        help=f"seconds to wait for {what} (default {default}; 0: ask and return)",
    )


def seconds(raw: str) -> int:
    if not whole_number(raw) or len(raw) > 5 or int(raw) > WAIT_LIMIT:
        raise argparse.ArgumentTypeError(f"expected whole seconds from 0 to {WAIT_LIMIT}")
    return int(raw)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _line(row: park.ParkedEvent) -> str:
    what = row.event or row.type
    return (
        f"#{row.id}  seq {row.seq}  {row.workspace_id}  {row.message_id}  {what}  "
        f"attempts={row.attempts}  parked {_when(row.parked_at)}  {row.error}: "
        + " ".join(row.message.split())[:200]
    )


def _hold_line(held: park.Hold) -> str:
    return (
        f"the processor holds at log seq {held.seq} ({held.workspace_id} {held.message_id}) "
        f"since {_when(held.since)}: {held.error}: " + " ".join(held.message.split())[:200] + "; "
        f"not parked because {held.reason}. It is retried until it processes (deploy a fix); "
        "if this one event is at fault, `leadloop events park-current` parks it"
        + (" (asked for)" if held.park_requested_at is not None else "")
    )


def cmd_parked(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.app import open_existing
    from leadloop.log.processor import CURSOR

    conn = open_existing(settings.database_url, args.workspace)
    try:
        rows = park.list_parked(conn, args.workspace)
        held = park.held(conn, CURSOR)
    finally:
        conn.close()
    if args.json:
        if held is not None:  # the list stays the output: a hold is said beside it
            print(_hold_line(held), file=sys.stderr)
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return 0
    if held is not None:
        print(_hold_line(held))
    if not rows:
        print("no parked events", file=sys.stderr)
    for row in rows:
        print(_line(row))
    return 0


def cmd_redrive(args: argparse.Namespace, settings: Settings) -> int:
    """Asks in the database: the engine whose processor leads (`serve`, or a `worker`) takes
    it up within a second or two, on its processor's thread, between two batches."""
    from leadloop.app import open_existing

    conn = open_existing(settings.database_url)
    try:
        with conn.transaction():
            rows = park.list_parked(conn) if args.all else [park.get(conn, args.id)]
            if rows == [None]:
                raise LeadloopError(
                    f"no parked event {args.id} (`leadloop events parked` lists them; a "
                    "re-driven event that was processed is no longer parked)"
                )
            # Read with the request: once the row is removed, its log position tells why.
            seqs = {row.id: row.seq for row in rows if row is not None}
            ids = park.request_redrive(conn, list(seqs), SystemClock().now())
        if not ids:
            print("no parked events", file=sys.stderr)
            return 0
        if args.wait == 0:
            print(f"asked the engine to re-drive {len(ids)} parked event(s)")
            return 0
        return _outcome(conn, seqs, args.wait)
    finally:
        conn.close()


def _outcome(conn: Any, seqs: dict[int, int], wait: int) -> int:
    """Report what became of each asked-for event (`seqs`: parked id to log position):
    processed (its row is removed), gone (erased: its row is removed too), still failing (the
    row stays, asked for no longer), or not taken up within `wait` seconds."""
    deadline = monotonic() + wait
    pause = threading.Event()
    left = set(seqs)
    failed = 0
    while True:
        for parked_id in sorted(left):
            row = park.get(conn, parked_id)
            if row is None and park.removed(conn, seqs[parked_id]) == "gone":
                print(f"#{parked_id}: gone: the event was erased; its parked row is removed")
            elif row is None:
                print(f"#{parked_id}: processed")
            elif row.redrive_requested_at is None:
                failed += 1
                print(f"#{parked_id}: still failing, stays parked: {_line(row)}")
            else:
                continue
            left.discard(parked_id)
        if not left or monotonic() > deadline:
            break
        pause.wait(0.2)
    for parked_id in sorted(left):
        print(
            f"#{parked_id}: asked for; no engine took it up within {wait} s (one that runs "
            "does; `leadloop events parked` tells)"
        )
    return 1 if failed or left else 0


def cmd_park_current(args: argparse.Namespace, settings: Settings) -> int:
    """Asks in the database, as `redrive` does: the engine that holds parks the event on its
    next attempt, which the request brings forward."""
    from leadloop.app import open_existing
    from leadloop.log.processor import CURSOR

    conn = open_existing(settings.database_url)
    try:
        with conn.transaction():
            held = park.request_park(conn, CURSOR, SystemClock().now())
        if held is None:
            raise LeadloopError(
                "the processor holds no event: nothing to park (`leadloop events parked` says "
                "when it holds)"
            )
        if args.wait == 0:
            print(f"asked the engine to park {held.message_id} (log seq {held.seq})")
            return 0
        deadline = monotonic() + args.wait
        pause = threading.Event()
        while (waiting := park.held(conn, CURSOR) == held) and monotonic() <= deadline:
            pause.wait(0.2)
        parked = [r for r in park.list_parked(conn) if r.seq == held.seq]
    finally:
        conn.close()
    if parked:
        print(f"parked {held.message_id} (log seq {held.seq}) as #{parked[0].id}")
        return 0
    if waiting:
        print(
            f"asked to park {held.message_id} (log seq {held.seq}); no engine took it up "
            f"within {args.wait} s (one that runs does; `leadloop events parked` tells)"
        )
        return 1
    print(f"{held.message_id} (log seq {held.seq}) was processed meanwhile: not parked")
    return 0
