"""Training a scoring model's predictive part from the log, storing it, and serving it.

Training streams the log one profile at a time (`replay.histories`) and keeps one short row of
feature values per profile, at most `MAX_PROFILES` of them (a digest-drawn sample beyond that),
so memory stays bounded whatever the size of the workspace. Serving reads one profile's history
and observes it the way training did (`features.observe`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from leadloop.scoring import replay
from leadloop.scoring.match import matches_filter
from leadloop.scoring.model import (
    CountFeature,
    PredictSpec,
    ScoreFeature,
    ScoringModel,
    TraitFeature,
)
from leadloop.scoring.predictive import learn
from leadloop.scoring.predictive.features import Value, observe
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection

MAX_PROFILES = 200_000
"""Profiles a training run learns from; beyond this a fixed sample by digest of the profile id.
Two hundred thousand profiles pin the weights of a few hundred columns far more finely than
the differences between profiles that matter."""


class Stored(msgspec.Struct, frozen=True):
    model_id: str
    spec_digest: str
    feature_ids: tuple[str, ...]
    kinds: tuple[learn.Kind, ...]
    fitted: learn.Fitted
    report: learn.Report
    trained_at: float
    suspects: tuple[tuple[str, float], ...] = ()
    """Features that alone rank leads with an AUC of `learn.SUSPECT_AUC` or more, with it."""


@dataclass(frozen=True, slots=True)
class NotTrained:
    reason: str
    profiles: int
    conversions: int


_decoder = msgspec.json.Decoder(Stored)


def kinds_of(spec: PredictSpec) -> tuple[learn.Kind, ...]:
    out: list[learn.Kind] = []
    for feature in spec.features:
        if isinstance(feature, TraitFeature):
            out.append(feature.kind)
        else:
            assert isinstance(feature, CountFeature | ScoreFeature)
            out.append("number")
    return tuple(out)


def train(
    conn: Conn,
    workspace: str,
    model: ScoringModel,
    now: float,
    progress: Callable[[Iterable[tuple[str, list[Any]]], int], Iterator[tuple[str, list[Any]]]]
    | None = None,
    *,
    store: bool = True,
) -> Stored | NotTrained:
    """Learn P(outcome) for `model` from the whole log; store it (unless not `store`) when
    there are enough conversions. Changes nothing else."""
    spec = model.predict
    assert spec is not None
    keys: list[str] = []
    rows: list[tuple[Value, ...]] = []
    labels: list[bool] = []
    rules: list[float] = []
    arrivals: list[int] = []
    # One snapshot for the whole read: the log is read in chunks, and a merge or an erasure
    # committed between two of them would split a person in two or cut a history short.
    with conn.snapshot():
        total = replay.count_profiles(conn, workspace)
        keep = min(1.0, MAX_PROFILES / total) if total else 1.0
        accounts = replay.AccountLog(conn, workspace)
        # A history too long to be served is not learned from either (a scripted client);
        # a customer's events after its outcome are never observed, so they do not count.
        stream: Iterable[tuple[str, list[Any]]] = replay.histories(
            conn,
            workspace,
            longest=MAX_SERVED_EVENTS,
            until=lambda event: matches_filter(event, spec.outcome),
        )
        if progress is not None:
            stream = progress(stream, total)
        for profile_id, events in stream:
            if keep < 1.0 and _draw(profile_id) >= keep:
                continue
            seen = observe(profile_id, events, model, spec, now, accounts, before_outcome=True)
            if seen is None:
                continue
            keys.append(profile_id)
            rows.append(seen.values)
            labels.append(seen.converted_at is not None)
            rules.append(seen.rules_total)
            arrivals.append(seen.arrived)
    if len(keys) > MAX_PROFILES:
        # The draw above keeps about `MAX_PROFILES`, more or fewer by chance: the cap holds
        # with the smallest draws, still the same profiles on every run.
        chosen = sorted(sorted(range(len(keys)), key=lambda i: _draw(keys[i]))[:MAX_PROFILES])
        keys = [keys[i] for i in chosen]
        rows = [rows[i] for i in chosen]
        labels = [labels[i] for i in chosen]
        rules = [rules[i] for i in chosen]
        arrivals = [arrivals[i] for i in chosen]
    conversions = sum(labels)
    if conversions < spec.min_conversions or conversions == len(labels):
        needed = (
            f"{spec.min_conversions} are needed (`min_conversions`)"
            if conversions < spec.min_conversions
            else "some profiles that did not convert are needed too"
        )
        return NotTrained(
            reason=f"{conversions} of {len(labels)} profiles reached the outcome; {needed}",
            profiles=len(labels),
            conversions=conversions,
        )
    kinds = kinds_of(spec)
    stored = Stored(
        model_id=model.id,
        spec_digest=spec.digest,
        feature_ids=tuple(f.id for f in spec.features),
        kinds=kinds,
        fitted=learn.train(kinds, rows, labels),
        report=msgspec.structs.replace(
            learn.cross_validate(kinds, keys, rows, labels, rules),
            newest_auc=learn.forward_auc(kinds, arrivals, rows, labels),
        ),
        trained_at=now,
        suspects=tuple(
            (spec.features[index].id, value)
            for index, value in learn.suspects(kinds, keys, rows, labels)
        ),
    )
    if not store:
        return stored
    with conn.transaction():
        # An upsert, not a delete and an insert: two trainings finishing together on
        # PostgreSQL would otherwise both insert, and one fail on the key.
        conn.execute(
            "INSERT INTO predictive_models (workspace_id, model_id, spec_digest, trained_at, body) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, model_id) DO UPDATE SET "
            "spec_digest = excluded.spec_digest, trained_at = excluded.trained_at, "
            "body = excluded.body",
            (workspace, model.id, spec.digest, now, msgspec.json.encode(stored).decode()),
        )
    return stored


def _draw(profile_id: str) -> float:
    """A profile's fixed place in [0, 1): the same sample on every run."""
    return int.from_bytes(hashlib.sha256(profile_id.encode()).digest()[:8], "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A stored model this version cannot read (written by another version of leadloop): it
    needs a new training, and is never a failure of the profile it would be served on."""

    model_id: str
    trained_at: float
    error: str


def _decode(model_id: str, trained_at: float, body: str) -> Stored | Unreadable:
    try:
        stored = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        return Unreadable(model_id, float(trained_at), str(exc))
    fitted, width = stored.fitted, len(stored.kinds)
    if (
        len(fitted.weights) != len(fitted.columns) + 1
        or len(fitted.means) != len(fitted.columns)
        or len(stored.feature_ids) != width
        or any(not 0 <= column.feature < width for column in fitted.columns)
    ):
        return Unreadable(model_id, float(trained_at), "its columns and weights do not agree")
    return stored


_SELECT = "SELECT model_id, trained_at, body FROM predictive_models WHERE workspace_id = ?"


def load(conn: Conn, workspace: str, model_id: str) -> Stored | Unreadable | None:
    rows = conn.execute(f"{_SELECT} AND model_id = ?", (workspace, model_id))
    return _decode(*rows[0]) if rows else None


def load_all(conn: Conn, workspace: str) -> list[Stored | Unreadable]:
    return [_decode(*row) for row in conn.execute(f"{_SELECT} ORDER BY model_id", (workspace,))]


def as_dict(stored: Stored | Unreadable) -> dict[str, Any]:
    """For JSON output: the report and what the model learns from, not its weights."""
    if isinstance(stored, Unreadable):
        return {
            "model": stored.model_id,
            "trained_at": stored.trained_at,
            "unreadable": True,
            "error": stored.error,
        }
    return {
        "model": stored.model_id,
        "trained_at": stored.trained_at,
        "spec_digest": stored.spec_digest,
        "features": list(stored.feature_ids),
        "report": msgspec.to_builtins(stored.report),
        "suspects": [{"feature": f, "auc": a} for f, a in stored.suspects],
    }


MAX_SERVED_EVENTS = 20_000
"""Events a profile may have for its prediction to be served: replaying them takes about
0.2 s, and a person has far fewer (a scripted client, far more)."""

REASONS = 3
"""Features named as the reasons for a prediction, the strongest first."""


def predicted_view(
    conn: Conn, workspace: str, profile_id: str, model: ScoringModel, now: float
) -> dict[str, Any]:
    """The `predicted` entry of a profile's score for `model` (a model with `predict`)."""
    spec = model.predict
    assert spec is not None
    stored = load(conn, workspace, model.id)
    if stored is None:
        return {"status": "not trained", "hint": "run `leadloop predict train`"}
    if isinstance(stored, Unreadable):
        return {
            "status": "stale",
            "hint": "the stored model was written by another version of leadloop: run "
            "`leadloop predict train`",
            "trained_at": stored.trained_at,
        }
    if stored.spec_digest != spec.digest:
        return {
            "status": "stale",
            "hint": "the playbook's `predict` section (or the rules a `score` feature reads) "
            "changed since training: run `leadloop predict train`",
            "trained_at": stored.trained_at,
        }
    count = conn.execute(
        "SELECT COUNT(*) FROM events WHERE workspace_id = ? AND profile_id = ?",
        (workspace, profile_id),
    )[0][0]
    if int(count) > MAX_SERVED_EVENTS:
        # Serving replays the history as training observed it; a bot-like history would hold
        # a request thread and its memory for seconds. Say so instead of guessing.
        return {
            "status": "history too long",
            "hint": f"{count} events; a prediction is served for at most {MAX_SERVED_EVENTS}",
            "trained_at": stored.trained_at,
        }
    events = replay.history_of(conn, workspace, profile_id)
    seen = observe(
        profile_id,
        events,
        model,
        spec,
        now,
        replay.AccountLog(conn, workspace),
        before_outcome=False,
    )
    if seen is None:
        return {"status": "no events"}
    probability = float(learn.probabilities(stored.fitted, [seen.values])[0])
    moved = learn.contributions(stored.fitted, seen.values)
    strongest = sorted(moved.items(), key=lambda item: (-abs(item[1]), item[0]))[:REASONS]
    return {
        "status": "trained",
        "probability": round(probability, 4),
        "score": round(100 * probability),
        "reasons": [
            {
                "feature": stored.feature_ids[index],
                "value": seen.values[index],
                "log_odds": round(effect, 3),
            }
            for index, effect in strongest
        ],
        "converted_at": seen.converted_at,
        "trained_at": stored.trained_at,
        "auc": stored.report.auc,
    }
