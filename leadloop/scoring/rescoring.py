"""Rescoring after a model changes: every profile's history is replayed through the new
model and its score state rewritten, a chunk of `CHUNK` profiles at a time, each chunk a job
on the processor's thread (`Rescore.step`), so events are processed between two chunks.

Where it stands is recorded in the chunk's transaction (`cursors`, `rescore:<workspace>`: the
model versions, the last profile id done, the counts): a restart resumes there, and a newer
version of a model starts it over. A profile with an event before the rescore reaches it is
rescored by the scoring stage first (`service._Cache.load`, through the same
`replay.rescore_profile`), its history read up to what the processor has processed; the rescore
then finds it scored under the new version and passes it by. Either way the result is the one
a rescore of everything before the event would give.

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

from leadloop.log import store
from leadloop.log.batch import Conn
from leadloop.log.processor import CURSOR
from leadloop.log.writer import Writer
from leadloop.scoring import replay
from leadloop.scoring.model import ScoreState, ScoringModel
from leadloop.scoring.service import DECAY_EVENT, ledger_row, timer_key

log = logging.getLogger("leadloop.scoring")
_decoder = msgspec.json.Decoder(ScoreState)
_encoder = msgspec.json.Encoder()
CHUNK = 500
Progress = Callable[[int, int], None]
"""Called with (profiles passed so far, profiles in the workspace): once before the first
chunk (0, or where a restart resumes), then after each chunk is written."""


class Record(msgspec.Struct, frozen=True):
    """Where a workspace's rescore stands, in `cursors`."""

    versions: dict[str, str]
    """Model id → the version profiles are rescored to."""
    after: str
    """The last profile id passed ("" before the first): ids are taken in order."""
    done: int
    total: int


_record_decoder = msgspec.json.Decoder(Record)


def record_name(workspace: str) -> str:
    return f"rescore:{workspace}"


def _recorded(conn: Conn, workspace: str) -> str | None:
    rows = conn.execute("SELECT position FROM cursors WHERE name = ?", (record_name(workspace),))
    return str(rows[0][0]) if rows else None


def begin(
    conn: Conn, workspace: str, models: tuple[ScoringModel, ...], *, resume: bool = True
) -> tuple[Record, str | None]:
    """Where a rescore of the workspace under `models` goes on from: with `resume`, where the
    recorded one stopped when it was for these versions (a restart), else the first profile;
    and the record as read (`rescore_chunk` writes only over that)."""
    versions = {m.id: m.version for m in models}
    seen = _recorded(conn, workspace)
    found = None if seen is None else _record_decoder.decode(seen)
    if resume and found is not None and found.versions == versions and found.after:
        return found, seen
    return Record(versions, "", 0, replay.count_profiles(conn, workspace)), seen


def models_changing(writer: Writer, workspace: str) -> None:
    """Called before a changed model goes live in a running engine: the workspace's record is
    voided, so that no rescore resumes from it. An event scored under the new version may
    rescore a profile the record says was passed; were the models changed back while the
    engine is stopped, the record's versions would be live again. A chunk being written
    meanwhile finds the record changed and is read again."""
    void = _encoder.encode(Record({}, "", 0, 0)).decode()
    writer.submit(lambda c: store.set_cursor(c, record_name(workspace), void)).result()


class Rescore:
    """A workspace's rescore under its live models, a chunk per `step`, with its progress
    (a bar on a terminal, and `progress`)."""

    def __init__(self, workspace: str, progress: Progress | None = None, changes: int = 0) -> None:
        """`changes`: how many times the workspace's models changed so far (`step`)."""
        self.workspace = workspace
        self._progress = progress
        self._bar: Any = None
        self._versions: dict[str, str] | None = None
        self._changes = changes

    def step(
        self,
        conn: Conn,
        writer: Writer,
        models: tuple[ScoringModel, ...],
        now: float,
        changes: int = 0,
    ) -> bool:
        """Rescore the next chunk of profiles; False once every profile is done (the record
        is then gone). Reads what the processor has committed: run between two batches.

        `changes` counts the workspace's model changes: one since the last step starts over
        from the first profile, even when the versions came back to those of the record (in
        between, an event may have rescored a profile it had passed to another version)."""
        again = changes != self._changes
        self._changes = changes
        record, seen = begin(conn, self.workspace, models, resume=not again)
        if again or record.versions != self._versions:  # the first step, or a change
            self._versions = record.versions
            self._report_start(record, models)
        after = rescore_chunk(conn, writer, self.workspace, models, record, now, seen)
        if after is None:
            self.close()
            if record.done != record.total and self._progress is not None:
                self._progress(record.done, record.done)  # profiles merged meanwhile
            log.info("rescored the %d profiles of %s", record.done, self.workspace)
            return False
        if after.done != record.done:
            self._bar.update(after.done - record.done)
            if self._progress is not None:
                self._progress(after.done, after.total)
        return True

    def _report_start(self, record: Record, models: tuple[ScoringModel, ...]) -> None:
        self.close()
        log.info(
            "rescoring %d profiles of %s under %s%s",
            record.total,
            self.workspace,
            sorted(record.versions),
            f", from profile {record.done + 1}" if record.done else "",
        )
        self._bar = tqdm(
            total=record.total,
            initial=record.done,
            unit="profile",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )
        if self._progress is not None:
            self._progress(record.done, record.total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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


def rescore_chunk(
    conn: Conn,
    writer: Writer,
    workspace: str,
    models: tuple[ScoringModel, ...],
    record: Record,
    now: float,
    seen: str | None = None,
) -> Record | None:
    """Rescore the `CHUNK` profiles after `record.after` whose state under a model is of
    another version (or missing, when they have a history); the others (new, or rescored by
    the scoring stage at an event) are passed by. States, ledger lines, decay timers and the
    record move in one transaction, if the stored record is still `seen`. Returns the record
    to go on from (the same one when an erasure, another consumer or a model change came in
    between: the chunk is read again), or None once every profile is done."""
    through, epoch = store.cursor_and_epoch(conn, CURSOR)
    ids = [
        str(pid)
        for (pid,) in conn.execute(
            "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IS NULL AND id > ? "
            "ORDER BY id LIMIT ?",
            (workspace, record.after, CHUNK),
        )
    ]
    if not ids or not models:  # every profile passed, or no model left to score under
        name = record_name(workspace)
        writer.submit(lambda c: c.execute("DELETE FROM cursors WHERE name = ?", (name,))).result()
        return None
    stored = _stored(conn, workspace, ids)
    stale = [
        (pid, model)
        for pid in ids
        for model in models
        if (found := stored.get((pid, model.id))) is None or found.model_version != model.version
    ]
    histories = (
        replay.processed_histories(conn, workspace, sorted({pid for pid, _ in stale}), through)
        if stale
        else {}
    )
    accounts = replay.AccountLog(conn, workspace)
    scores: list[tuple[Any, ...]] = []
    ledger: list[tuple[Any, ...]] = []
    timers: list[tuple[Any, ...]] = []
    cancelled: list[tuple[str, str]] = []
    for pid, model in stale:
        old = stored.get((pid, model.id))
        events = histories[pid]
        if old is None and not events:
            continue  # nothing processed for it yet: its first event scores it
        decision = replay.rescore_profile(pid, events, model, old, now, accounts)
        state = decision.state
        scores.append((workspace, pid, model.id, _encoder.encode(state).decode(), now))
        ledger.extend(ledger_row(workspace, pid, c, state.stage) for c in decision.changes)
        key = timer_key(model.id, pid)
        if decision.decay_due_at is None:
            cancelled.append((workspace, key))
        else:
            payload = _encoder.encode({"name": DECAY_EVENT, "properties": {"model": model.id}})
            timers.append((workspace, key, pid, decision.decay_due_at, payload.decode()))
    done = record.done + len(ids)
    # Profiles made since it began are passed too (scored already): the total grows with them.
    after = msgspec.structs.replace(record, after=ids[-1], done=done, total=max(record.total, done))
    position = _encoder.encode(after).decode()

    def write(c: Conn) -> bool:
        # The processor's thread runs this job, but on PostgreSQL an erasure is a plain write
        # (and another worker may have taken over): either would make what was read stale.
        if store.cursor_and_epoch(c, CURSOR) != (through, epoch):
            return False
        if _recorded(c, workspace) != seen:  # a model changed meanwhile (`models_changing`)
            return False
        _write_chunk(c, scores, ledger, timers, cancelled)
        store.set_cursor(c, record_name(workspace), position)
        return True

    return after if writer.submit(write).result() else record


def _stored(conn: Conn, workspace: str, ids: list[str]) -> dict[tuple[str, str], ScoreState]:
    marks = ",".join("?" * len(ids))
    return {
        (str(pid), str(model)): _decoder.decode(state)
        for pid, model, state in conn.execute(
            f"SELECT profile_id, model, state FROM scores WHERE workspace_id = ? "
            f"AND profile_id IN ({marks})",
            (workspace, *ids),
        )
    }


def _write_chunk(
    c: Conn,
    scores: list[tuple[Any, ...]],
    ledger: list[tuple[Any, ...]],
    timers: list[tuple[Any, ...]],
    cancelled: list[tuple[str, str]],
) -> None:
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
