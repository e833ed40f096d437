"""The scoring stage's shell: loads each profile's score state, calls the pure decisions,
and turns them into rows (state, ledger), internal events, webhooks in the outbox and decay
timers, all in the processor's batch transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from leadloop.identity.model import Profile
from leadloop.log.batch import Batch, Conn, Emit, OutboxRow, Timer
from leadloop.log.model import Event
from leadloop.scoring import decide, replay
from leadloop.scoring import queries as score_queries
from leadloop.scoring.model import (
    JOURNEY_UPDATE_EVENT,
    EmitEvent,
    ScoreChange,
    ScoreDecision,
    ScoreState,
    ScoringModel,
    SendWebhook,
    engagement_at,
    initial_state,
)
from leadloop.scoring.stages import move_reason

_state_decoder = msgspec.json.Decoder(ScoreState)
_encoder = msgspec.json.Encoder()
DECAY_EVENT = "Score Decay Due"


@dataclass(frozen=True)
class StageMove:
    """A profile moved between lifecycle stages while the batch's event `event_seq` was
    processed; read by the stages after scoring through `stage_moves(batch, event)`."""

    workspace_id: str
    profile_id: str
    model: str
    from_stage: str
    to_stage: str
    at: float
    event_seq: int


def stage_moves(batch: Batch, event: Event) -> list[StageMove]:
    by_event = batch.extra.get("stage_moves")
    if by_event is None:
        return []
    assert isinstance(by_event, dict)
    return list(by_event.get(event.seq, ()))


def timer_key(model_id: str, profile_id: str) -> str:
    return f"decay:{model_id}:{profile_id}"


class ScoringStage:
    name = "scoring"

    def __init__(self, models: Callable[[str], tuple[ScoringModel, ...]]) -> None:
        """`models(workspace)` gives the scoring models of the workspace's applied playbook."""
        self._models = models

    def _models_for(self, cache: _Cache, ws: str) -> tuple[ScoringModel, ...]:
        """The workspace's models as the batch first asked: a playbook applied meanwhile
        counts from the next batch, so one profile's events are not scored under two versions
        of a model in one batch (the second would take the first's state for its own)."""
        models = cache.models.get(ws)
        if models is None:
            models = cache.models[ws] = self._models(ws)
        return models

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        cache = _cache(batch)
        ws, pid = event.workspace_id, profile.id
        models = cache.models.get(ws)  # `_models_for`, inline: once per event
        if models is None:
            models = self._models_for(cache, ws)
        if not models:
            return profile
        if batch.identity.merged and pid in batch.identity.merged.values():
            self._rebuild_after_merge(batch, cache, event, profile, models)
        # A decay timer firing is scored as any event is, under every model, as a replay of
        # the log scores it: the steps due by then, and a refit when the account's traits
        # changed since (another member's group call), with the thresholds that crosses.
        decay = event.type == "internal" and event.event == DECAY_EVENT
        wanted = event.properties.get("model") if decay else None
        account = batch.identity.account_traits(ws, profile)
        changed = self._traits_changed(batch, event, profile)
        for model in models:
            state = cache.load(batch, ws, pid, model)
            decision = decide.score_event(
                state, event, profile, account, model, batch.now, traits_changed=changed
            )
            cache.apply(batch, event, profile, model, decision, fired=model.id == wanted)
        return profile

    @staticmethod
    def _rebuild_after_merge(
        batch: Batch,
        cache: _Cache,
        event: Event,
        profile: Profile,
        models: tuple[ScoringModel, ...],
    ) -> None:
        """The profile absorbed others in this batch: its state is rebuilt from the merged
        history before `event` is scored on it, as a rescore of the log would give. Adding the
        states up would not: caps, sessions and decay windows apply to the person's events
        together, in log order. `decide.merge_scores` keeps the stage and runs the actions of
        thresholds the merged score crosses."""
        ws, pid = event.workspace_id, profile.id
        absorbed = set(batch.identity.absorbed_by(ws, pid))
        held = cache.absorbed.get((ws, pid), set())
        if absorbed <= held:
            return
        cache.absorbed[(ws, pid)] = absorbed
        ids = [pid, *sorted(absorbed)]
        # The states to add up are those not yet part of another: a profile absorbed earlier
        # in the batch is in the survivor's, one a newly absorbed profile took in is in its.
        new = absorbed - held
        held_by_new = set().union(*(cache.absorbed.get((ws, other), set()) for other in new))
        others = sorted(new - held_by_new)
        members = set(ids)
        seqs = [seq for owner, seq in batch.identity.event_profiles if owner in members]
        conn = batch.identity.conn
        history = replay.merged_history(conn, ws, ids, seqs, event.seq)
        accounts = replay.AccountLog(conn, ws)
        for model in models:
            replayed = decide.rescore(
                replay.with_context(pid, history, accounts), model, batch.now, final_decay=False
            ).state
            decision = decide.merge_scores(
                cache.load(batch, ws, pid, model),
                {other: cache.load(batch, ws, other, model) for other in others},
                replayed,
                event,
                profile,
                model,
                batch.now,
            )
            cache.apply(batch, event, profile, model, decision, fired=False)

    @staticmethod
    def _traits_changed(batch: Batch, event: Event, profile: Profile) -> bool:
        """Whether fit may have changed since the profile's last scored event: traits come
        from identify and group calls (an account's traits from any of its members, so a
        profile with accounts is refitted every time), a journey's updates and merges."""
        if event.type in ("identify", "group") or profile.account_ids:
            return True
        if event.type == "internal" and event.event == JOURNEY_UPDATE_EVENT:
            return True
        merged = batch.identity.merged
        return bool(merged) and profile.id in merged.values()

    def prefetch(self, batch: Batch, events: list[Event]) -> None:
        """Load the score state of every profile the batch already knows, in bulk."""
        cache = _cache(batch)
        by_workspace: dict[str, list[str]] = {}
        for ws, pid in batch.identity.profiles:
            if self._models_for(cache, ws):
                by_workspace.setdefault(ws, []).append(pid)
        for ws, ids in by_workspace.items():
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = batch.identity.conn.execute(
                    "SELECT profile_id, model, state FROM scores WHERE workspace_id = ? "
                    f"AND profile_id IN ({marks})",
                    (ws, *chunk),
                )
                for pid, model, state in rows:
                    cache.loaded[(ws, str(pid), str(model))] = _state_decoder.decode(state)
                for pid in chunk:
                    cache.known.add((ws, pid))

    def flush(self, batch: Batch, conn: Conn) -> None:
        cache = _cache(batch)
        merged = batch.identity.merged
        conn.executemany(
            "INSERT INTO scores (workspace_id, profile_id, model, state, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, profile_id, model) "
            "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            [
                (ws, pid, model, _encoder.encode(state).decode(), batch.now)
                for (ws, pid, model), state in cache.states.items()
                if (ws, pid) not in merged
            ],
            bulk=True,
        )
        conn.executemany(
            "INSERT INTO score_ledger (workspace_id, profile_id, model, model_version, at, kind, "
            "rule, points, fit, engagement, total, stage, reason, message_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            cache.ledger,
            bulk=True,
        )
        # An absorbed profile's score lives on in its survivor's (`_rebuild_after_merge`).
        conn.executemany(
            "DELETE FROM scores WHERE workspace_id = ? AND profile_id = ?", list(merged)
        )


def ledger_row(ws: str, pid: str, change: ScoreChange, stage: str) -> tuple[Any, ...]:
    """A `score_ledger` row's values, in the order of the inserts here and in a rescore."""
    return (
        ws,
        pid,
        change.model_id,
        change.model_version,
        change.at,
        change.kind,
        change.rule_id,
        change.points,
        change.fit,
        change.engagement,
        change.total,
        stage,
        change.reason,
        change.message_id,
    )


class _Cache:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str, str], ScoreState] = {}
        self.ledger: list[tuple[Any, ...]] = []
        self.loaded: dict[tuple[str, str, str], ScoreState] = {}
        self.timer_due: dict[tuple[str, str, str], float | None] = {}
        """Due time of the decay timer known to exist per (workspace, profile, model), or None."""
        self.known: set[tuple[str, str]] = set()
        """Profiles whose stored states are all in `loaded` (prefetched in bulk)."""
        self.absorbed: dict[tuple[str, str], set[str]] = {}
        """Per survivor, the profiles merged into it whose history its state already holds."""
        self.models: dict[str, tuple[ScoringModel, ...]] = {}
        """Per workspace, the models the batch is scored under (`ScoringStage._models_for`)."""
        self.accounts: dict[str, replay.AccountLog] = {}

    def load(self, batch: Batch, ws: str, pid: str, model: ScoringModel) -> ScoreState:
        """The profile's state under `model` before the event: this batch's, else the stored
        one. A stored state of another version of the model (or none, for a profile that is
        not new: the model is) is rescored first, as the rescore that has not reached the
        profile yet will not have to (`_rescore`)."""
        key = (ws, pid, model.id)
        state = self.states.get(key)  # decided in this batch, under the batch's models
        if state is not None:
            return state
        state = self.loaded.get(key)
        if state is not None and state.model_version == model.version:
            return state
        if (ws, pid) in batch.identity.created:
            return initial_state(model)  # made in this batch: a new id has nothing stored
        if state is None and (ws, pid) not in self.known:
            rows = batch.identity.conn.execute(
                "SELECT state FROM scores WHERE workspace_id = ? AND profile_id = ? AND model = ?",
                key,
            )
            state = _state_decoder.decode(rows[0][0]) if rows else None
        if state is not None and state.model_version == model.version:
            self.loaded[key] = state
            return state
        return self._rescore(batch, ws, pid, model, state)

    def _rescore(
        self, batch: Batch, ws: str, pid: str, model: ScoringModel, stored: ScoreState | None
    ) -> ScoreState:
        """Rescore the profile from its processed history (`replay.rescore_profile`), as the
        workspace's rescore would have before this batch: its state, `rescore` ledger line and
        decay timer are this batch's, and its events are decided on the state it gives. What
        the stored state alone would have crossed fires nothing; what the event crosses on the
        rescored one fires once. The rescore then finds the profile scored and passes it by."""
        key = (ws, pid, model.id)
        processed = batch.processed
        conn = batch.identity.conn
        if processed is None:  # a batch made by hand: everything in the log counts as processed
            history = replay.history_of(conn, ws, pid)
        else:
            found = replay.processed_histories(
                conn, ws, [pid], processed.through, processed.excluded
            )
            history = found[pid]
        if stored is None and not history:
            return initial_state(model)  # nothing to rescore: the rescore passes it by too
        accounts = self.accounts.get(ws)
        if accounts is None:
            accounts = self.accounts[ws] = replay.AccountLog(conn, ws)
        decision = replay.rescore_profile(pid, history, model, stored, batch.now, accounts)
        state = decision.state
        # Stored as far as the event's decision is concerned (`_timer_due`, the journeys'
        # score before the event): a rescore before the batch would have written it.
        self.loaded[key] = state
        self.timer_due.pop(key, None)
        self.ledger.extend(ledger_row(ws, pid, c, state.stage) for c in decision.changes)
        timer = timer_key(model.id, pid)
        if decision.decay_due_at is None:
            batch.cancel(ws, timer)
        else:
            payload = {"model": model.id}
            batch.schedule(Timer(ws, timer, pid, decision.decay_due_at, DECAY_EVENT, payload))
        return state

    def _timer_due(self, key: tuple[str, str, str], model: ScoringModel) -> float | None:
        """Due time of the decay timer known to exist, from this batch or the stored state.

        Invariant: a stored state whose decay is due at D has a timer at or before D."""
        if key in self.timer_due:
            return self.timer_due[key]
        stored = self.loaded.get(key)
        due = decide.decay_due_at(stored, model, stored.as_of or 0.0) if stored else None
        self.timer_due[key] = due
        return due

    def apply(
        self,
        batch: Batch,
        event: Event,
        profile: Profile,
        model: ScoringModel,
        decision: ScoreDecision,
        *,
        fired: bool,
    ) -> None:
        """Keep the decision's state and queue its rows; `fired`: the event is this model's
        decay timer firing."""
        ws, pid = event.workspace_id, profile.id
        cache_key = (ws, pid, model.id)
        state = decision.state
        self.states[cache_key] = state
        stage = state.stage
        self.ledger.extend(ledger_row(ws, pid, change, stage) for change in decision.changes)
        if decision.stage_changes:
            self._moved(batch, event, pid, model, decision)
        if decision.effects:
            self._effects(batch, event, profile, model, decision)
        # Timers are moved lazily: activity only ever postpones decay, so a timer already set
        # for an earlier instant stays; when it fires and finds nothing due, the decision
        # sets the next one. That saves a timer write per event, at the cost of at most one
        # extra wake-up per profile per decay window.
        existing = None if fired else self._timer_due(cache_key, model)
        due = decision.decay_due_at
        if due is None:
            if existing is not None or fired:
                batch.cancel(ws, timer_key(model.id, pid))
            self.timer_due[cache_key] = None
        elif existing is None or due < existing:
            key = timer_key(model.id, pid)
            batch.schedule(Timer(ws, key, pid, due, DECAY_EVENT, {"model": model.id}))
            self.timer_due[cache_key] = due

    def _moved(
        self, batch: Batch, event: Event, pid: str, model: ScoringModel, decision: ScoreDecision
    ) -> None:
        ws = event.workspace_id
        by_event = batch.extra.setdefault("stage_moves", {})
        assert isinstance(by_event, dict)
        moves = by_event.setdefault(event.seq, [])
        for move in decision.stage_changes:
            # Later stages of the same batch (conversions, journeys) react to stage moves.
            moves.append(
                StageMove(ws, pid, model.id, move.from_stage, move.to_stage, move.at, event.seq)
            )
            self.ledger.append(
                (
                    ws,
                    pid,
                    model.id,
                    model.version,
                    move.at,
                    "stage",
                    move.rule_id,
                    0.0,
                    decision.state.fit,
                    engagement_at(decision.state, move.at),
                    move.total,
                    move.to_stage,
                    move_reason(move),
                    move.message_id,
                )
            )

    def _effects(
        self,
        batch: Batch,
        event: Event,
        profile: Profile,
        model: ScoringModel,
        decision: ScoreDecision,
    ) -> None:
        ws, pid = event.workspace_id, profile.id
        for effect in decision.effects:
            if isinstance(effect, EmitEvent):
                batch.emits.append(
                    Emit(ws, effect.key, effect.name, pid, event.timestamp, effect.properties)
                )
            elif isinstance(effect, SendWebhook):
                payload = dict(effect.payload)
                payload["traits"] = profile.traits
                payload["identities"] = batch.identity.identities_of_profile(ws, pid)
                payload["reasons"] = self._reasons(batch, ws, pid, model.id)
                batch.outbox.append(
                    OutboxRow(
                        workspace_id=ws,
                        kind="webhook",
                        destination=effect.webhook_id,
                        idempotency_key=_webhook_id(effect.key),
                        payload={"body": payload},
                        profile_id=pid,
                        not_before=batch.now,
                    )
                )

    def _reasons(self, batch: Batch, ws: str, pid: str, model: str) -> list[dict[str, Any]]:
        """Every ledger line behind the current score: stored ones and this batch's, the
        profile's and those of the profiles merged into it (stored, or in this batch)."""
        conn = batch.identity.conn
        ids = {*score_queries.merged_ids(conn, ws, pid), *batch.identity.absorbed_by(ws, pid)}
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            "SELECT at, kind, rule, points, reason, message_id FROM score_ledger "
            f"WHERE workspace_id = ? AND profile_id IN ({marks}) AND model = ? "
            "AND kind != 'stage' ORDER BY id",
            (ws, *sorted(ids), model),
        )
        lines = [tuple(r) for r in rows]
        lines += [
            (e[4], e[5], e[6], e[7], e[12], e[13])
            for e in self.ledger
            if e[0] == ws and e[1] in ids and e[2] == model and e[5] != "stage"
        ]
        keys = ("at", "kind", "rule", "points", "reason", "message_id")
        return [dict(zip(keys, line, strict=True)) for line in lines if line[3]]


def _webhook_id(key: str) -> str:
    """A stable `webhook-id` from the decision's key (Standard Webhooks ids are opaque)."""
    import hashlib

    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _cache(batch: Batch) -> _Cache:
    cache = batch.extra.get("scoring")
    if cache is None:
        cache = _Cache()
        batch.extra["scoring"] = cache
    assert isinstance(cache, _Cache)
    return cache
