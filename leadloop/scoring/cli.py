"""`leadloop profiles list`: the profiles one scoring model has scored, by stage and score, as
a table, CSV for a spreadsheet or a CRM import, or JSON lines (`GET /api/v1/profiles`
pages through the same query)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from tqdm import tqdm

from leadloop.cli import label
from leadloop.config import Settings
from leadloop.errors import LeadloopError, escaped
from leadloop.scoring import queries

COLUMNS = ("id", "score", "fit", "engagement", "stage", "last_activity", *queries.LISTED_IDENTITIES)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet reads as the start of a formula: such a cell is written with a leading
`'`, since ids and emails come from whoever sends events (`=HYPERLINK(…)` as a user id)."""


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("profiles", help="list profiles by score and stage")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = psub.add_parser(
        "list",
        help="the profiles a scoring model has scored, filtered by stage and score (as of now: "
        "decay applied), in profile id order",
    )
    ls.add_argument("--model", type=label, required=True, help="a scoring model of the playbook")
    ls.add_argument(
        "--stage",
        type=_stages,
        default=None,
        help="one stage or several, comma-separated (MQL,SQL; case ignored)",
    )
    ls.add_argument("--min-score", type=_score, default=None, help="lowest score listed")
    ls.add_argument("--max-score", type=_score, default=None, help="highest score listed")
    ls.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv (a header row; cells a spreadsheet would read as a formula "
        "start with ') or json (one object per line)",
    )
    ls.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    db_arg(ls)
    ls.set_defaults(handler=cmd_profiles_list)


def _stages(raw: str) -> list[str]:
    names = [part.strip() for part in raw.split(",")]
    if not all(names) or any(not n.isprintable() for n in names):
        raise argparse.ArgumentTypeError(
            "expected stage names separated by commas, none empty (e.g. MQL,SQL)"
        )
    return names


def _score(raw: str) -> float:
    text = raw.removeprefix("-")
    whole, _, fraction = text.partition(".")
    if not (whole.isascii() and whole.isdigit()) or (
        fraction and not (fraction.isascii() and fraction.isdigit())
    ):
        raise argparse.ArgumentTypeError(
            f"expected a number in ASCII digits, with an optional - and ., got {escaped(raw[:40])}"
        )
    value = float(raw)
    if not math.isfinite(value) or abs(value) > 1e9:
        raise argparse.ArgumentTypeError("expected a score between -1e9 and 1e9")
    return value


def cmd_profiles_list(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.app import open_existing
    from leadloop.clock import SystemClock
    from leadloop.log.store import log_now

    conn = open_existing(settings.database_url, args.workspace)
    try:
        ws = args.workspace
        where = _filter(conn, ws, args)
        now = log_now(conn, ws, SystemClock().now())
        # On a terminal only: a count of what is listed (how many a filter lets through is
        # known at the end; the bar's total is the model's scores when nothing is filtered).
        everyone = where == queries.ScoreFilter()
        total = _count(conn, ws, args.model) if everyone and sys.stderr.isatty() else None
        out = _writer(args.format)
        listed = 0
        bar = tqdm(total=total, unit="profile", file=sys.stderr, disable=not sys.stderr.isatty())
        try:
            for item in _all(conn, ws, args.model, where, now):
                out(item)
                listed += 1
                bar.update()
        finally:
            bar.close()
    finally:
        conn.close()
    shown = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"{listed} profiles of model {args.model} listed, scores as of {shown}", file=sys.stderr)
    return 0


def _filter(conn: Any, ws: str, args: argparse.Namespace) -> queries.ScoreFilter:
    """The filter, checked against the live playbook's model: a misspelt model or stage is an
    error naming what there is, not an empty list."""
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    if (
        args.min_score is not None
        and args.max_score is not None
        and args.min_score > args.max_score
    ):
        raise LeadloopError("--min-score is above --max-score")
    applied = store.latest(conn, ws)
    try:
        models = store.build(applied.sources).models if applied is not None else ()
    except PlaybookError:  # a `${VAR}` this shell does not set: the stored rows tell instead
        models = None
    stages = frozenset(s.casefold() for s in args.stage or ())
    if models is None:
        found = conn.execute(
            "SELECT 1 FROM scores WHERE workspace_id = ? AND model = ? LIMIT 1", (ws, args.model)
        )
        if not found:
            raise LeadloopError(f"no profile has a score of model {args.model!r} in {ws}")
        return queries.ScoreFilter(stages, args.min_score, args.max_score)
    model = next((m for m in models if m.id == args.model), None)
    if model is None:
        names = ", ".join(m.id for m in models) or "none"
        raise LeadloopError(
            f"no scoring model {args.model!r} in the live playbook of {ws} (its models: {names})"
        )
    for name in args.stage or ():
        if model.stage(name) is None:
            known = ", ".join(s.name for s in model.stages)
            raise LeadloopError(
                f"{escaped(name)!r} is not a stage of model {args.model!r} ({known})"
            )
    return queries.ScoreFilter(stages, args.min_score, args.max_score)


def _count(conn: Any, ws: str, model: str) -> int:
    return int(
        conn.execute(
            "SELECT COUNT(*) FROM scores WHERE workspace_id = ? AND model = ?",
            (ws, model),
        )[0][0]
    )


def _all(
    conn: Any, ws: str, model: str, where: queries.ScoreFilter, now: float
) -> Iterator[dict[str, Any]]:
    after = ""
    while True:
        items, nxt = queries.scored_profiles(conn, ws, model, where, after, 1000, now)
        yield from items
        if nxt is None:
            return
        after = nxt


def _cells(item: dict[str, Any]) -> dict[str, str]:
    by_type: dict[str, list[str]] = {}
    for identity in item["identities"]:
        by_type.setdefault(identity["type"], []).append(identity["value"])
    last = item["last_activity"]
    return {
        "id": item["id"],
        "score": f"{item['score']:g}",
        "fit": f"{item['fit']:g}",
        "engagement": f"{item['engagement']:g}",
        "stage": item["stage"],
        "last_activity": ""
        if last is None
        else datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **{kind: ";".join(by_type.get(kind, ())) for kind in queries.LISTED_IDENTITIES},
    }


def _writer(fmt: str) -> Callable[[dict[str, Any]], None]:
    if fmt == "json":
        return lambda item: print(json.dumps(item, ensure_ascii=False))
    if fmt == "csv":
        out = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        out.writeheader()
        return lambda item: out.writerow(
            {k: "'" + v if v.startswith(_FORMULA) else v for k, v in _cells(item).items()}
        )
    print("  ".join(COLUMNS))

    def line(item: dict[str, Any]) -> None:
        cells = _cells(item)
        print("  ".join(escaped(cells[k]) or "-" for k in COLUMNS))

    return line
