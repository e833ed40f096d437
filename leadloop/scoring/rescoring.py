"""Rescoring after a model changes: every profile's history is replayed through the new
model and its score state rewritten, in chunks (bounded memory), from the processor's
thread so no event is processed halfway through.

Stage actions do not fire again during a rescore (sales would be paged for old news), and a
stage never moves down because of it: the higher of the stored and the replayed stage stays.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from tqdm import tqdm

from leadloop.log.batch import Conn
from leadloop.log.writer import Writer
from leadloop.scoring import replay
from leadloop.scoring.model import ScoreState, ScoringModel, engagement_at
from leadloop.scoring.service import DECAY_EVENT, timer_key

log = logging.getLogger("leadloop.scoring")
_decoder = msgspec.json.Decoder(ScoreState)
_encoder = msgspec.json.Encoder()
CHUNK = 500
Progress = Callable[[int, int], None]
"""Called with (profiles rescored so far, profiles in the workspace): once with 0 before the
first chunk, then after each chunk is written."""


def rescore_workspace(
    conn: Conn,
    writer: Writer,
    workspace: str,
    models: tuple[ScoringModel, ...],
    now: float,
    progress: Progress | None = None,
) -> int:
    """Rescore every profile of the workspace under `models`; returns profiles rescored.

    At most `CHUNK` profiles' histories are held at once. Progress goes to a bar on a
    terminal and, when given, to `progress`."""
    if not models:
        return 0
    total = replay.count_profiles(conn, workspace)
    log.info("rescoring %d profiles of %s under %s", total, workspace, [m.id for m in models])
    done = 0
    pending: list[tuple[str, list[Any]]] = []
    accounts = replay.AccountLog(conn, workspace)
    bar = tqdm(total=total, unit="profile", file=sys.stderr, disable=not sys.stderr.isatty())

    def flush() -> None:
        nonlocal done, pending
        _rescore_chunk(conn, writer, workspace, models, pending, now, accounts)
        done += len(pending)
        bar.update(len(pending))
        pending = []
        if progress is not None:
            progress(done, total)

    try:
        if progress is not None:
            progress(0, total)
        for pid, events in replay.histories(conn, workspace):
            pending.append((pid, events))
            if len(pending) >= CHUNK:
                flush()
        if pending:
            flush()
    finally:
        bar.close()
    log.info("rescored %d profiles of %s", done, workspace)
    return done


def stale_models(
    conn: Conn, workspace: str, models: tuple[ScoringModel, ...]
) -> tuple[ScoringModel, ...]:
    """The models some profile of the workspace is not scored under as they are now: it has
    no score under the model, or one from another version of it (stored by a msgspec encoder,
    so the version reads `"model_version":"<digest>"` in the state's JSON).

    A running engine rescores when a changed model is applied; this finds what it could not,
    a playbook applied while the engine was stopped, or a rescore the stop cut short."""
    profiles = replay.count_profiles(conn, workspace)
    if not profiles:
        return ()
    return tuple(model for model in models if _scored_under(conn, workspace, model) < profiles)


def _scored_under(conn: Conn, workspace: str, model: ScoringModel) -> int:
    """Profiles whose score under the model is of its version as it is now."""
    marker = _encoder.encode({"model_version": model.version}).decode()[1:-1]
    rows = conn.execute(
        "SELECT COUNT(*) FROM scores WHERE workspace_id = ? AND model = ? AND state LIKE ?",
        (workspace, model.id, f"%{marker}%"),
    )
    return int(rows[0][0])


def scored_with_other_values(
    conn: Conn, workspace: str, models: tuple[ScoringModel, ...]
) -> tuple[ScoringModel, ...]:
    """The models, as this process's environment builds them, that read a `${VAR}` and under
    which no profile is scored, though there are profiles: the engine scored them with
    another value (or under a playbook applied since it last ran)."""
    if not replay.count_profiles(conn, workspace):
        return ()
    return tuple(m for m in models if m.variables and not _scored_under(conn, workspace, m))


class ReadsVariables(Protocol):
    """A scoring model or a journey: what reads `${VAR}`s whose values count in its version."""

    @property
    def variables(self) -> tuple[str, ...]: ...


def variable_names(model: ReadsVariables) -> str:
    return ", ".join(f"${{{name}}}" for name in model.variables)


def rescore_reasons(
    conn: Conn,
    workspace: str,
    live: tuple[ScoringModel, ...],
    models: tuple[ScoringModel, ...],
) -> list[str]:
    """A line for each of `models` that applying them over `live` (both built in this
    process's environment) rescores, saying why: for `playbook diff` and `apply`.

    The engine builds the playbook with its own environment: a `${VAR}` a model reads may
    hold another value there than here, so the text alone may not show why, nor whether, a
    model is rescored. The profiles' stored versions tell what the engine scored under."""
    lines = []
    other = {m.id for m in scored_with_other_values(conn, workspace, models)}
    for model in stale_models(conn, workspace, models):
        before = next((m for m in live if m.id == model.id), None)
        if before is None:
            why = "it is new, so every profile is scored under it from the log"
        elif before.version != model.version:
            why = "its rules changed, so every profile is rescored from the log"
        elif model.id in other and _scored_before(conn, workspace, model):
            why = (
                f"back to an earlier version: the value of {variable_names(model)} in this "
                "shell is one the engine scored with before, not the one its profiles are "
                "scored with now: an engine started with this environment rescores every "
                "profile"
            )
        elif model.id in other:
            why = (
                f"its profiles were scored with another value of {variable_names(model)} than this "
                "environment has (or under a playbook applied since the engine last ran); "
                "an engine started with this environment rescores every profile"
            )
        else:
            why = (
                "some profiles are not scored under it yet (a playbook applied while the "
                "engine was stopped, or a rescore cut short); the engine rescores them when "
                "it starts"
            )
        lines.append(f"rescores model {model.id}: {why}")
    return lines


def _scored_before(conn: Conn, workspace: str, model: ScoringModel) -> bool:
    """Whether the ledger has a line made under the model's version as it is now (asked
    only of a model no profile is scored under: the ledger is read until the first line)."""
    rows = conn.execute(
        "SELECT 1 FROM score_ledger WHERE workspace_id = ? AND model = ? AND model_version = ? "
        "LIMIT 1",
        (workspace, model.id, model.version),
    )
    return bool(rows)


def _rescore_chunk(
    conn: Conn,
    writer: Writer,
    workspace: str,
    models: tuple[ScoringModel, ...],
    chunk: list[tuple[str, list[Any]]],
    now: float,
    accounts: replay.AccountLog,
) -> None:
    ids = [pid for pid, _ in chunk]
    marks = ",".join("?" * len(ids))
    stored: dict[tuple[str, str], ScoreState] = {
        (str(pid), str(model)): _decoder.decode(state)
        for pid, model, state in conn.execute(
            f"SELECT profile_id, model, state FROM scores WHERE workspace_id = ? "
            f"AND profile_id IN ({marks})",
            (workspace, *ids),
        )
    }
    scores: list[tuple[Any, ...]] = []
    ledger: list[tuple[Any, ...]] = []
    timers: list[tuple[Any, ...]] = []
    cancelled: list[tuple[str, str]] = []
    for pid, events in chunk:
        for model in models:
            decision = replay.replay(pid, events, model, now, accounts)
            state = decision.state
            old = stored.get((pid, model.id))
            if old is not None and model.rank(old.stage) > model.rank(state.stage):
                state = msgspec.structs.replace(state, stage=old.stage)
            old_total = 0.0 if old is None else old.fit + engagement_at(old, now)
            engagement = engagement_at(state, now)
            scores.append((workspace, pid, model.id, _encoder.encode(state).decode(), now))
            ledger.append(
                (
                    workspace,
                    pid,
                    model.id,
                    model.version,
                    now,
                    "rescore",
                    None,
                    state.fit + engagement - old_total,
                    state.fit,
                    engagement,
                    state.fit + engagement,
                    state.stage,
                    f"rescored from the log under model version {model.version[:12]}",
                    None,
                )
            )
            key = timer_key(model.id, pid)
            if decision.decay_due_at is None:
                cancelled.append((workspace, key))
            else:
                payload = _encoder.encode({"name": DECAY_EVENT, "properties": {"model": model.id}})
                timers.append((workspace, key, pid, decision.decay_due_at, payload.decode()))

    def write(c: Conn) -> None:
        c.executemany(
            "INSERT INTO scores (workspace_id, profile_id, model, state, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, profile_id, model) "
            "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            scores,
        )
        c.executemany(
            "INSERT INTO score_ledger (workspace_id, profile_id, model, model_version, at, kind, "
            "rule, points, fit, engagement, total, stage, reason, message_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ledger,
        )
        c.executemany("DELETE FROM timers WHERE workspace_id = ? AND key = ?", cancelled)
        c.executemany(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, key) DO UPDATE SET "
            "due_at = excluded.due_at, payload = excluded.payload",
            timers,
        )

    writer.submit(write).result()
