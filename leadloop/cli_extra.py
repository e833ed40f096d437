"""Commands of the later stages (playbooks, scoring, outbox, benchmarks), kept apart so the
core CLI stays small."""

from __future__ import annotations

import argparse
import sys
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from leadloop.cli import clipped, label, row_id
from leadloop.clock import SystemClock
from leadloop.config import Settings
from leadloop.errors import LeadloopError
from leadloop.ingest.model import MAX_MESSAGE_BYTES
from leadloop.outbox.service import KINDS as OUTBOX_KINDS
from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("playbook", help="validate, compare and apply playbooks")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = psub.add_parser(
        "validate", help="check a playbook file or folder (file:line: field: error)"
    )
    v.add_argument("path", help="playbook file or folder")
    v.set_defaults(handler=cmd_playbook_validate)
    d = psub.add_parser("diff", help="what applying the playbook would change")
    d.add_argument("path", help="playbook file or folder")
    db_arg(d)
    d.set_defaults(handler=cmd_playbook_diff)
    a = psub.add_parser("apply", help="make the playbook live (a running engine picks it up)")
    a.add_argument("path", help="playbook file or folder")
    db_arg(a)
    a.set_defaults(handler=cmd_playbook_apply)

    e = sub.add_parser("explain", help="why a lead has its score (from the score ledger)")
    e.add_argument(
        "identifier",
        type=identifier,
        help="a user id, email, anonymous id, phone or profile id",
    )
    e.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    e.add_argument("--model", type=label, default=None, help="only this scoring model")
    e.add_argument(
        "--at",
        type=instant,
        default=None,
        metavar="TIME",
        help="read the scores as of this time: a date (UTC), a date and time with a zone, or "
        "epoch seconds (default: the engine's newest event when later than this clock, else now)",
    )
    db_arg(e)
    e.set_defaults(handler=cmd_explain)

    o = sub.add_parser("outbox", help="inspect and re-drive outgoing effects")
    osub = o.add_subparsers(dest="action", metavar="ACTION", required=True)
    ol = osub.add_parser("list", help="list outbox rows")
    ol.add_argument(
        "--status",
        choices=["pending", "delivered", "dead", "skipped"],
        default=None,
        help="only this state",
    )
    ol.add_argument("--kind", choices=OUTBOX_KINDS, default=None, help="only this kind")
    ol.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    db_arg(ol)
    ol.set_defaults(handler=cmd_outbox_list)
    orp = osub.add_parser("replay", help="re-drive dead letters with a fresh attempt budget")
    orp.add_argument("--id", type=row_id, default=None, help="only this row")
    orp.add_argument("--kind", choices=OUTBOX_KINDS, default=None, help="only this kind")
    orp.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    db_arg(orp)
    orp.set_defaults(handler=cmd_outbox_replay)

    register_backtest(sub, db_arg)

    from leadloop.conversions.cli import register as register_conversions

    register_conversions(sub, db_arg)

    r = sub.add_parser("replay", help="rebuild profiles, scores and timers from the event log")
    r.add_argument("--yes", action="store_true", help="confirm: derived state is rebuilt")
    db_arg(r)
    r.set_defaults(handler=cmd_replay)

    from leadloop.bench_cli import register as register_bench

    register_bench(sub, db_arg)


def instant(raw: str) -> float:
    """A time as `metrics` reads its bounds (`analytics.window.instant`)."""
    from leadloop.analytics.window import WindowError
    from leadloop.analytics.window import instant as read_instant

    try:
        at = read_instant("--at", raw)
    except WindowError as error:
        raise argparse.ArgumentTypeError(error.message) from None
    assert at is not None  # given text always names one or raises
    return at


IDENTIFIER_LIMIT = 512


def identifier(raw: str) -> str:
    """What `explain` looks a profile up by. No identifier is longer than `IDENTIFIER_LIMIT`
    (the tracking API refuses longer ids, emails stop at 254), so a longer one matches nothing
    and is refused rather than echoed back whole."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if "\x00" in raw:
        # PostgreSQL text cannot hold it, so no identifier has one; its driver raised.
        raise argparse.ArgumentTypeError("must not contain a NUL character")
    if len(raw) > IDENTIFIER_LIMIT:
        raise argparse.ArgumentTypeError(
            f"at most {IDENTIFIER_LIMIT} characters (no identifier is longer), got {len(raw):,}"
        )
    return raw


def _conn(settings: Settings, *, create: bool = False, workspace: str | None = None) -> Any:
    """The engine's database; `create`: make it when missing (applying a playbook may come
    before the first `serve`), else a missing SQLite file, or a `workspace` it does not hold,
    is an error (`open_existing`)."""
    from leadloop.app import open_existing, prepare_database

    if not create:
        return open_existing(settings.database_url, workspace)
    url = DatabaseUrl.parse(settings.database_url)
    prepare_database(url, SystemClock())
    return connect(url)


def cmd_playbook_validate(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    try:
        playbook = store.build(store.read_sources(args.path))
    except PlaybookError as exc:
        print(f"invalid: {clipped(str(exc))}", file=sys.stderr)
        return 1
    _print_warnings(playbook)
    print(
        f"ok: {args.path} (version {playbook.version}, workspace {playbook.workspace}, "
        f"{len(playbook.models)} scoring model(s), digest {playbook.digest[:12]})"
    )
    return 0


def _print_warnings(playbook: Any) -> None:
    """What will be off once the playbook is live: `validate` and `apply` say the same (apply
    left out the channels', so a disabled email channel went unmentioned)."""
    from leadloop.channels.config import parse_channels

    channel_warnings = parse_channels(playbook.sections.get("channels")).warnings
    for warning in (*playbook.warnings, *channel_warnings):
        print(f"warning: {warning}")


def cmd_playbook_diff(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store
    from leadloop.playbook.load import diff_playbooks

    new = store.build(store.read_sources(args.path))
    conn = _conn(settings)
    try:
        applied = store.latest(conn, new.workspace)
    finally:
        conn.close()
    if applied is None:
        print(f"no playbook applied yet in workspace {new.workspace}: everything is new")
        return 0
    try:
        old = store.build(applied.sources)
    except PlaybookError as exc:
        # Validation grew stricter since it was applied: the files given are not at fault.
        print(
            f"the live playbook #{applied.id} of workspace {new.workspace} does not load in "
            f"this version ({exc}): everything is new"
        )
        return 0
    lines = diff_playbooks(old, new)
    rescores = _rescores(settings, new, old)
    if lines:
        print("\n".join(lines))
    else:
        print("no changes to the text" if rescores else "no changes")
    for line in rescores:
        print(line)
    return 0


def _rescores(settings: Settings, new: Any, live: Any) -> list[str]:
    """`_changes` on a connection of its own."""
    conn = _conn(settings)
    try:
        return _changes(conn, new, live)
    finally:
        conn.close()


def _changes(conn: Conn, new: Any, live: Any) -> list[str]:
    """What applying `new` over `live` (the live playbook, None for none) changes beyond its
    text: the models it rescores (`rescoring.rescore_reasons`) and the journeys it gives a new
    version (`journeys.changes.version_changes`), and why."""
    from leadloop.journeys.changes import version_changes
    from leadloop.playbook.store import journeys_of
    from leadloop.scoring.rescoring import rescore_reasons

    # Both were built by `store.build`, which validated their journeys the same way.
    ws, before = new.workspace, journeys_of(live).journeys if live is not None else ()
    return [
        *rescore_reasons(conn, ws, live.models if live is not None else (), new.models),
        *version_changes(conn, ws, before, journeys_of(new).journeys),
    ]


def cmd_playbook_apply(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.playbook import store

    sources = store.read_sources(args.path)
    playbook = store.build(sources)
    _print_warnings(playbook)
    conn = _conn(settings, create=True)
    try:
        applied = store.latest(conn, playbook.workspace)
        rescores = _apply_rescores(conn, playbook, applied)
        if applied is not None and applied.digest == playbook.digest:
            print(f"unchanged: digest {playbook.digest[:12]} is already live")
            for line in rescores:
                print(line)
            return 0
        with conn.transaction():
            pid = store.save(conn, playbook, sources, SystemClock().now())
    finally:
        conn.close()
    print(
        f"applied playbook #{pid} (digest {playbook.digest[:12]}) to workspace {playbook.workspace}"
    )
    for line in rescores:
        print(line)
    return 0


def _apply_rescores(conn: Conn, playbook: Any, applied: Any) -> list[str]:
    """`_changes` for `apply`, on its connection; nothing to say when the live playbook does
    not build here (a `${VAR}` this shell does not set, or stricter validation)."""
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    try:
        live = store.build(applied.sources) if applied is not None else None
    except PlaybookError:
        return []
    return _changes(conn, playbook, live)


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.identity import queries
    from leadloop.identity.normalize import normalize_email, phone_identity
    from leadloop.scoring import queries as score_queries

    conn = _conn(settings, workspace=args.workspace)
    try:
        ws = args.workspace
        pid = queries.canonical_id(conn, ws, args.identifier)
        # Emails and phones are stored normalized: the identifier is read as the API's lookup
        # reads it (a phone with spaces, or national with LEADLOOP_DEFAULT_REGION, is E.164).
        normalized = {
            "email": normalize_email(args.identifier),
            "phone": phone_identity(args.identifier, settings.default_region),
        }
        for kind in ("user_id", "email", "anonymous_id", "phone", "external_id"):
            if pid is not None:
                break
            value = normalized.get(kind, args.identifier)
            if value:
                pid = queries.lookup(conn, ws, kind, value)
        if pid is None:
            print(f"no profile matches {args.identifier!r} in workspace {ws}", file=sys.stderr)
            return 1
        now, source = _explain_now(conn, ws, args.at)
        scores = score_queries.scores_view(conn, ws, pid, now)
        if not scores:
            print(f"profile {pid} has no scores (no scoring model applied to it yet)")
            return 0
        if args.model and args.model not in scores:
            raise LeadloopError(
                f"profile {pid} has no score for model {args.model!r} "
                f"(it has: {', '.join(sorted(scores))})"
            )
        live = _live_models(conn, ws)
        shown = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        print(f"as of {shown} ({source})")
        for model, view in scores.items():
            if args.model and model != args.model:
                continue
            gone = live is not None and model not in live
            print(
                f"{model}: {view['score']:g} = fit {view['fit']:g} + engagement "
                f"{view['engagement']:g} · stage {view['stage']} · profile {pid}"
                + (" · no longer in the live playbook" if gone else "")
                + _other_values(live.get(model) if live else None, view["model_version"])
            )
            predicted = _predicted_line(conn, ws, pid, model, now)
            if predicted:
                print(predicted)
            for entry in _ledger_lines(conn, ws, pid, model):
                when = datetime.fromtimestamp(entry["at"], UTC).strftime("%Y-%m-%d %H:%M")
                sign = "+" if entry["points"] >= 0 else ""
                rule = f" [{entry['rule']}]" if entry["rule"] else ""
                other = entry["profile_id"]
                whose = f"  (on {other}, since merged)" if other != pid else ""
                print(
                    f"  {when}  {entry['kind']:<10} {sign}{entry['points']:g}{rule}  "
                    f"→ {entry['total']:g}  {entry['reason']}{whose}"
                )
    finally:
        conn.close()
    return 0


Conn = SqliteConnection | PostgresConnection


def _live_models(conn: Conn, ws: str) -> dict[str, Any] | None:
    """The models of the workspace's newest stored playbook by id, as this shell builds it;
    None when it cannot be built here (a `${VAR}` this shell does not set): then nothing is
    said."""
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    applied = store.latest(conn, ws)
    if applied is None:
        return {}
    try:
        return {model.id: model for model in store.build(applied.sources).models}
    except PlaybookError:
        return None


def _other_values(model: Any, scored_under: str) -> str:
    """Said when the score is of another version of a model that reads `${VAR}`s than this
    shell builds: the engine's values differ from this shell's (never printed), or the
    score predates the live playbook."""
    from leadloop.scoring.rescoring import variable_names

    if model is None or not model.variables or model.version == scored_under:
        return ""
    return (
        f" · scored under version {scored_under[:12]}, not {model.version[:12]} as this "
        f"shell's {variable_names(model)} build it"
    )


def _explain_now(conn: Conn, ws: str, at: float | None) -> tuple[float, str]:
    """The time `explain` reads scores as of, and where it came from. A manual clock lives in
    the engine's memory only; the newest event it received (a timer fires as one) is the
    latest time of it the database holds, as `backtest` and `predict train` read it."""
    from leadloop.log.store import log_now

    if at is not None:
        return at, "--at"
    wall = SystemClock().now()
    now = log_now(conn, ws, wall)
    return (
        (wall, "this clock")
        if now == wall
        else (now, "the engine's newest event, after this clock")
    )


def _predicted_line(conn: Conn, ws: str, pid: str, model_id: str, now: float) -> str | None:
    """The model's predicted probability with its strongest reasons, when it has one."""
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    applied = store.latest(conn, ws)
    try:
        models = store.build(applied.sources).models if applied else ()
    except PlaybookError:
        return None
    model = next((m for m in models if m.id == model_id and m.predict is not None), None)
    if model is None:
        return None
    from leadloop.scoring.predictive.service import predicted_view

    view = predicted_view(conn, ws, pid, model, now)
    if view["status"] != "trained":
        return f"  predicted: {view['status']}" + (f" ({view['hint']})" if "hint" in view else "")
    reasons = ", ".join(
        f"{r['feature']}={r['value']!r} ({r['log_odds']:+.2f})" for r in view["reasons"]
    )
    return (
        f"  predicted: {view['probability']:.0%} likely to reach the outcome "
        f"(model AUC {view['auc']:.3f}); strongest: {reasons}"
    )


EXPLAIN_PAGE = 10_000
"""Ledger lines `explain` reads at a time: every line is printed, a page in memory at once."""


def _ledger_lines(conn: Conn, ws: str, pid: str, model: str) -> Iterator[dict[str, Any]]:
    from leadloop.scoring import queries as score_queries

    after = 0
    while True:
        page = score_queries.ledger(conn, ws, pid, model, after, EXPLAIN_PAGE)
        yield from page
        if len(page) < EXPLAIN_PAGE:
            return
        after = int(page[-1]["id"])


def cmd_outbox_list(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.outbox import service

    conn = _conn(settings, workspace=args.workspace)
    try:
        items = service.list_items(conn, args.workspace, args.status, args.kind, 0, 1000)
    finally:
        conn.close()
    for item in items:
        print(
            f"#{item['id']} {item['kind']} {item['destination']} {item['status']} "
            f"attempts={item['attempts']} {item['last_error'] or ''}".rstrip()
        )
    print(f"{len(items)} row(s)")
    return 0


def cmd_outbox_replay(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.outbox import service

    conn = _conn(settings, workspace=args.workspace)
    try:
        with conn.transaction():
            n = service.redrive(
                conn, args.workspace, SystemClock().now(), item_id=args.id, kind=args.kind
            )
            found = (
                conn.execute(
                    "SELECT kind, status FROM outbox WHERE workspace_id = ? AND id = ?",
                    (args.workspace, args.id),
                )
                if args.id is not None and n == 0
                else None
            )
    finally:
        conn.close()
    if found is not None:
        # Asked for one row and nothing moved: say why, rather than "0 re-driven".
        if not found:
            print(
                f"leadloop: no outbox row {args.id} in workspace {args.workspace!r}",
                file=sys.stderr,
            )
            return 2
        kind, status = found[0]
        if status != "dead" or (args.kind and kind != args.kind):
            why = f"is {status}" if status != "dead" else f"is a {kind}, not a {args.kind}"
            print(f"leadloop: outbox row {args.id} {why}: nothing re-driven", file=sys.stderr)
            return 1
    print(f"re-driven {n} dead letter(s)")
    return 0


def register_backtest(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "backtest", help="replay history through a playbook's scoring rules, changing nothing"
    )
    p.add_argument("--playbook", required=True, help="the playbook to try (file or folder)")
    p.add_argument(
        "--since", type=day, default=None, help="count stage entries from this date (YYYY-MM-DD)"
    )
    p.add_argument("--stage", type=label, default="MQL", help="the stage to count (default MQL)")
    p.add_argument(
        "--outcome",
        type=event_name,
        default="Deal Won",
        help="outcome event name (default Deal Won)",
    )
    p.add_argument(
        "--workspace", type=label, default=None, help="workspace (default: the playbook's)"
    )
    db_arg(p)
    p.set_defaults(handler=cmd_backtest)


def event_name(raw: str) -> str:
    """An event name as the tracking API stores it: a name no stored event can have would count
    nothing, and the table would look like a result."""
    if not raw.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if raw != raw.strip():
        raise argparse.ArgumentTypeError("without surrounding spaces (events are stored without)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_MESSAGE_BYTES:,} characters (no tracked message is longer), "
            f"got {len(raw):,}"
        )
    if any(unicodedata.category(c) == "Cc" for c in raw):
        raise argparse.ArgumentTypeError("control characters (NUL, newlines) are not allowed")
    return raw


def day(raw: str) -> float:
    """A UTC date, `YYYY-MM-DD`, as the epoch seconds of its first instant."""
    try:
        return datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        # Not echoed: the value may be any length.
        raise argparse.ArgumentTypeError("expected a date, YYYY-MM-DD") from None


def cmd_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from leadloop.log.store import log_now
    from leadloop.playbook import store
    from leadloop.scoring import replay
    from leadloop.scoring.rescoring import scored_with_other_values, variable_names

    new = store.build(store.read_sources(args.playbook))
    workspace = args.workspace or new.workspace
    # Case-insensitive, as stage names are throughout the playbook (`ScoringModel.stage`); one
    # no model has is an error, since a typo would count nobody and look like a result.
    found = next((s for m in new.models if (s := m.stage(args.stage)) is not None), None)
    if found is None:
        stages = {m.id: [candidate.name for candidate in m.stages] for m in new.models}
        listed = "; ".join(f"{model}: {', '.join(names)}" for model, names in stages.items())
        raise LeadloopError(
            f"--stage {args.stage!r} is not a stage of the playbook's models ({listed or 'none'})"
        )
    stage = found.name
    since = args.since
    conn = _conn(settings, workspace=workspace)
    # One snapshot for the whole replay (read in chunks): a merge or an erasure committed by a
    # running engine between two chunks would otherwise split a person or cut a history.
    try:
        with conn.snapshot():
            applied = store.latest(conn, workspace)
            current = store.build(applied.sources) if applied else None
            # Replays clamp event times to `now`, as the engine clamps them to its clock.
            now = log_now(conn, workspace, SystemClock().now())
            runs = {"new": new.models, "current": current.models if current else ()}
            differ = scored_with_other_values(conn, workspace, runs["current"])
            results = {
                label: {m.id: replay.BacktestResult(m.id, m.version, stage) for m in models}
                for label, models in runs.items()
            }
            total = replay.count_profiles(conn, workspace)
            events_seen = 0
            accounts = replay.AccountLog(conn, workspace)
            for pid, events in tqdm(
                replay.histories(conn, workspace),
                total=total,
                unit="profile",
                file=sys.stderr,
                disable=not sys.stderr.isatty(),
            ):
                events_seen += len(events)
                for label, models in runs.items():
                    replay.backtest_profile(
                        results[label],
                        pid,
                        events,
                        models,
                        stage,
                        args.outcome,
                        since,
                        now,
                        accounts,
                    )
    finally:
        conn.close()
    print(f"backtest over {total} profiles, {events_seen} events, workspace {workspace}")
    shown = f", since {_day_text(since)}" if since is not None else ""
    print(f"stage {stage!r}, outcome {args.outcome!r}{shown}")
    for model in differ:
        print(
            f"note: the current model {model.id} reads {variable_names(model)} from this "
            "shell's environment, and no profile is scored under it as built with these values: "
            "the engine's values differ (or a playbook was applied since it last ran), so its "
            "`current` rows are not what the engine scores"
        )
    print(
        "\n| rules | model | version | reached stage | median days to stage | then outcome | rate |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for label in ("current", "new"):
        for r in results[label].values():
            median = r.median_days()
            rate = f"{100 * r.converted / r.reached:.1f}%" if r.reached else "—"
            print(
                f"| {label} | {r.model} | {r.version[:10]} | {r.reached} | "
                f"{'—' if median is None else f'{median:.1f}'} | {r.converted} | {rate} |"
            )
    months = sorted({m for rs in results.values() for r in rs.values() for m in r.by_month})
    if months:
        print(
            "\n| month | "
            + " | ".join(
                f"{lb}:{r.model}" for lb in ("current", "new") for r in results[lb].values()
            )
            + " |"
        )
        print("| --- |" + " ---: |" * sum(len(results[lb]) for lb in ("current", "new")))
        for month in months:
            cells = [
                str(r.by_month.get(month, 0))
                for lb in ("current", "new")
                for r in results[lb].values()
            ]
            print(f"| {month} | " + " | ".join(cells) + " |")
    return 0


def _day_text(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.log.rebuild import reset_derived_state

    if not args.yes:
        print(
            "leadloop: replay clears profiles, identities, accounts, scores, the ledger and "
            "timers and rebuilds them from the log; stop the engine, then run it with --yes",
            file=sys.stderr,
        )
        return 2
    conn = _conn(settings)
    try:
        if (
            conn.dialect == "postgres"
            and not conn.execute("SELECT pg_try_advisory_lock(724138)")[0][0]
        ):
            print("leadloop: error: a worker is processing; stop it first", file=sys.stderr)
            return 2
        with conn.transaction():
            n = reset_derived_state(conn)
    finally:
        conn.close()
    print(f"derived state cleared; the engine will replay {n} events when it starts")
    return 0
