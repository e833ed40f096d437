"""`leadloop predict train|show`: fit the live playbook's predictive models, and read them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

from leadloop.config import Settings
from leadloop.errors import LeadloopError
from leadloop.scoring import model as scoring_model
from leadloop.scoring.model import Feature, PredictSpec, ScoringModel

if TYPE_CHECKING:  # numpy loads with it: not for every `leadloop --help`
    from leadloop.scoring.predictive import service

T = TypeVar("T")


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from leadloop.cli import label

    group = sub.add_parser(
        "predict", help="train and inspect predictive lead scores (a `predict` section per model)"
    )
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "train",
        help="learn P(outcome) from the whole log, cross-validate it against the rules, store it",
    )
    db_arg(p)
    p.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    p.add_argument(
        "--model", type=label, help="only this scoring model (default: every one with `predict`)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the cross-validated report, store nothing"
    )
    p.set_defaults(handler=cmd_predict_train)
    s = actions.add_parser("show", help="the stored models: when trained, on what, how good")
    db_arg(s)
    s.add_argument(
        "--workspace", type=label, default="default", help="workspace (default: default)"
    )
    s.add_argument("--json", action="store_true", help="as JSON")
    s.set_defaults(handler=cmd_predict_show)


def _live_models(conn: Any, workspace: str, only: str | None) -> list[ScoringModel]:
    from leadloop.playbook import store

    applied = store.latest(conn, workspace)
    if applied is None:
        raise LeadloopError(f"workspace {workspace!r} has no playbook applied")
    models = [m for m in store.build(applied.sources).models if m.predict is not None]
    if only is not None:
        models = [m for m in models if m.id == only]
        if not models:
            raise LeadloopError(f"the live playbook has no model {only!r} with a `predict` section")
    if not models:
        raise LeadloopError("no model of the live playbook has a `predict` section")
    return models


def _progress(label: str) -> Callable[[Iterable[T], int], Iterator[T]]:
    from tqdm import tqdm

    def wrap(items: Iterable[T], total: int) -> Iterator[T]:
        yield from tqdm(
            items,
            total=total,
            unit="profile",
            desc=label,
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )

    return wrap


def cmd_predict_train(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.app import open_existing
    from leadloop.clock import SystemClock
    from leadloop.log.store import log_now
    from leadloop.scoring.predictive import service

    conn = open_existing(settings.database_url, args.workspace)
    failed = False
    try:
        # Unconverted leads are observed as of this instant (see `log_now` for why it is not
        # the newest client-dated event).
        now = log_now(conn, args.workspace, SystemClock().now())
        for model in _live_models(conn, args.workspace, args.model):
            outcome = service.train(
                conn, args.workspace, model, now, _progress(model.id), store=not args.dry_run
            )
            if isinstance(outcome, service.NotTrained):
                print(f"{model.id}: not trained: {outcome.reason}", file=sys.stderr)
                failed = True
                continue
            assert model.predict is not None
            print(describe(outcome, kept=not args.dry_run, features=model.predict.features))
    finally:
        conn.close()
    return 1 if failed else 0


def describe(stored: service.Stored, *, kept: bool = True, features: Sequence[Feature] = ()) -> str:
    """`features`: the spec the model was trained on, which names what each suspect reads."""
    from leadloop.scoring.predictive import learn

    report = stored.report
    when = _when(stored.trained_at)
    lines = [
        f"{stored.model_id}: trained {when} on {report.profiles} profiles, "
        f"{report.conversions} of them reached the outcome ({report.base_rate:.1%})"
        + ("" if kept else " (dry run: not stored)"),
        f"  cross-validated ({report.folds} folds): AUC {report.auc:.3f}, Brier "
        f"{report.brier:.3f}; the rules' score alone: AUC {report.rules_auc:.3f} "
        f"({report.auc - report.rules_auc:+.3f})",
    ]
    if report.newest_auc is not None:
        lines.append(
            f"  trained on the first {1 - learn.NEWEST:.0%} of profiles to arrive, on the newest "
            f"{learn.NEWEST:.0%}: AUC {report.newest_auc:.3f}"
        )
    by_id = {f.id: f for f in features}
    for feature, value in stored.suspects:
        lines.append(
            f"  warning: {feature!r} alone ranks leads with AUC {value:.2f}: "
            + _suspect_advice(by_id.get(feature))
        )
    return "\n".join(lines)


def _suspect_advice(feature: Feature | None) -> str:
    """What to do about a suspect, which depends on what it reads: only traits can be listed
    in `post_outcome`."""
    match feature:
        case scoring_model.TraitFeature():
            return (
                "if it is set only after the outcome, list it in `post_outcome`, or the model "
                "learns the outcome itself"
            )
        case scoring_model.CountFeature():
            return (
                "if the events it counts are sent only once the outcome is settled, narrow its "
                "`event` or `where` to those sent before, or remove it, or the model learns the "
                "outcome itself"
            )
        case scoring_model.ScoreFeature():
            return (
                "the fit or engagement rules it reads likely use a trait or an event set only "
                "after the outcome: change those rules or remove the feature, or the model "
                "learns the outcome itself"
            )
        case None:
            return "if it is known only after the outcome, the model learns the outcome itself"
        case _:
            assert_never(feature)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_predict_show(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.app import open_existing
    from leadloop.scoring.predictive import service

    conn = open_existing(settings.database_url, args.workspace)
    try:
        found = service.load_all(conn, args.workspace)
        live = _live_specs(conn, args.workspace)
    finally:
        conn.close()
    if args.json:
        print(
            json.dumps(
                [
                    service.as_dict(s)
                    | (
                        {}
                        if isinstance(s, service.Unreadable)
                        else {"stale": _stale(s, live), "stale_unknown": _unknown(live)}
                    )
                    for s in found
                ],
                indent=2,
            )
        )
        return 0
    if not found:
        print(f"no predictive model trained in workspace {args.workspace!r}")
    for stored in found:
        if isinstance(stored, service.Unreadable):
            print(
                f"{stored.model_id}: stored by another version of leadloop (trained "
                f"{_when(stored.trained_at)}); "
                "run `leadloop predict train`"
            )
            continue
        stale = _stale(stored, live)
        # A stale model's features may since have changed kind under the same id.
        spec = None if isinstance(live, str) or stale is not None else live[stored.model_id]
        print(describe(stored, features=spec.features if spec else ()))
        if stale is not None:
            print(f"  stale: {stale}")
        elif isinstance(live, str):
            print(f"  stale: unknown ({live})")
    return 0


def _live_specs(conn: Any, workspace: str) -> dict[str, PredictSpec] | str:
    """Each live model's `predict` section, or why the playbook cannot be built here (a
    `${VAR}` this shell does not set): then staleness is unknown, and said to be."""
    from leadloop.errors import PlaybookError
    from leadloop.playbook import store

    applied = store.latest(conn, workspace)
    if applied is None:
        return {}
    try:
        models = store.build(applied.sources).models
    except PlaybookError as error:
        return f"the live playbook cannot be built in this shell: {error}"
    return {m.id: m.predict for m in models if m.predict is not None}


def _unknown(live: dict[str, PredictSpec] | str) -> str | None:
    return live if isinstance(live, str) else None


def _stale(stored: service.Stored, live: dict[str, PredictSpec] | str) -> str | None:
    """Why the engine does not serve `stored` (as `predicted_view` decides), or None (also
    when that cannot be told here: `_unknown` says why)."""
    if isinstance(live, str):
        return None
    if stored.model_id not in live:
        return "no model of the live playbook has this id and a `predict` section: not served"
    if live[stored.model_id].digest != stored.spec_digest:
        return (
            "the playbook's `predict` section (or the rules a `score` feature reads) changed "
            "since training, so it is not served: run `leadloop predict train`"
        )
    return None
