"""The journeys stage's shell: loads instances and memberships for the batch's profiles, calls
the pure decisions (`journeys.decide`, and `policy.decide` for every send), and writes instance
rows, the path, send decisions, outbox rows and timers in the processor's batch transaction.

Runs after scoring (it reads the stage moves and scores scoring made for the same event). A
journey timer is one row per instance (`journey:<instance>`): rescheduling moves it, and its
firing carries a token, so a firing the instance no longer waits for changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from leadloop.errors import PlaybookError
from leadloop.identity import decide as identity_decide
from leadloop.identity.model import Profile
from leadloop.journeys import decide
from leadloop.journeys.config import journey_from_definition, parse_journeys
from leadloop.journeys.model import (
    PROFILE_UPDATE_EVENT,
    SUPPRESSION_EVENTS,
    WAKE_EVENT,
    Advance,
    CallWebhook,
    CancelWake,
    ChangeAudience,
    EmitEvent,
    Instance,
    Journey,
    JourneySet,
    Membership,
    QueueSend,
    RecordPolicy,
    ScheduleWake,
    ScoreTrigger,
)
from leadloop.log.batch import Batch, Conn, Emit, OutboxRow, Timer
from leadloop.log.model import Event
from leadloop.playbook.model import Playbook
from leadloop.policy.model import Recipient, SentRecord, Suppression
from leadloop.scoring.match import condition_holds
from leadloop.scoring.model import Condition, ScoreState, total_at
from leadloop.scoring.service import stage_moves

log = logging.getLogger("leadloop.journeys")
_instance_decoder = msgspec.json.Decoder(Instance)
_membership_decoder = msgspec.json.Decoder(dict[str, Membership])
_score_decoder = msgspec.json.Decoder(ScoreState)
_json = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_CHUNK = 500
_LIVE = "('active', 'waiting', 'holdout')"
REMOVED_REASON = "journey removed from the playbook"


def timer_key(instance_id: str) -> str:
    return f"journey:{instance_id}"


def effect_key(key: str) -> str:
    """A stable outbox idempotency key (e.g. a Standard Webhooks `webhook-id`)."""
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


class JourneyStage:
    name = "journeys"

    def __init__(
        self,
        playbook: Callable[[str], Playbook | None],
        *,
        channels_enabled: Callable[[str], frozenset[str] | None] | None = None,
        known_templates: Callable[[str], Mapping[str, Iterable[str]] | None] | None = None,
    ) -> None:
        """`playbook(workspace)` gives the live playbook; `channels_enabled(workspace)` the
        channels whose senders are configured (None: trust the playbook's policy)."""
        self._playbook = playbook
        self._channels_enabled = channels_enabled
        self._known_templates = known_templates
        self._sets: dict[str, tuple[str, JourneySet]] = {}
        self._versions: dict[tuple[str, str, str], Journey] = {}
        self._synced: set[tuple[str, str]] = set()

    # -- configuration ---------------------------------------------------------------------

    def journeys(self, workspace: str) -> JourneySet | None:
        """The workspace's journeys (parsed once per playbook digest); None without a playbook.
        A journeys section that does not validate keeps the previous one running."""
        playbook = self._playbook(workspace)
        if playbook is None:
            return None
        cached = self._sets.get(workspace)
        if cached is not None and cached[0] == playbook.digest:
            return cached[1]
        try:
            known = self._known_templates(workspace) if self._known_templates else None
            parsed = parse_journeys(playbook, known)
        except PlaybookError as error:
            log.error("journeys of playbook %s not loaded: %s", playbook.digest, error)
            parsed = cached[1] if cached is not None else JourneySet(digest=playbook.digest)
        self._sets[workspace] = (playbook.digest, parsed)
        for journey in parsed.journeys:
            self._versions[(workspace, journey.id, journey.version)] = journey
        return parsed

    def _journey(self, batch: Batch, ws: str, journey_id: str, version: str) -> Journey | None:
        found = self._versions.get((ws, journey_id, version))
        if found is None:
            rows = batch.identity.conn.execute(
                "SELECT definition FROM journey_versions WHERE workspace_id = ? "
                "AND journey_id = ? AND version = ?",
                (ws, journey_id, version),
            )
            if rows:
                found = journey_from_definition(_json.decode(rows[0][0]), journey_id, version)
                self._versions[(ws, journey_id, version)] = found
        return found

    # -- the stage -------------------------------------------------------------------------

    def prefetch(self, batch: Batch, events: list[Event]) -> None:
        """Bulk-load what the stage reads per profile (live instances, memberships, suppressions
        and, when a frequency cap needs them, recent sends) for every profile the batch already
        knows after identity's prefetch. A profile identity creates later in the batch is new:
        it has no rows, so it costs no lookup at all."""
        state = _state(batch)
        identity = batch.identity
        state.prefetched = True
        state.known.update(identity.profiles)
        by_ws: dict[str, list[str]] = {}
        for ws, pid in identity.profiles:
            if self.journeys(ws) is not None:
                by_ws.setdefault(ws, []).append(pid)
        for (ws, _old), target in identity.redirects.items():
            # Events naming a merged-away profile resolve to its survivor, loaded lazily.
            if (ws, target) not in state.known and self.journeys(ws) is not None:
                state.known.add((ws, target))
                by_ws.setdefault(ws, []).append(target)
        earliest: dict[str, float] = {}
        for event in events:
            at = moment(event)
            if at < earliest.get(event.workspace_id, at + 1):
                earliest[event.workspace_id] = at
        for ws, ids in by_ws.items():
            journeys = self.journeys(ws)
            window = _cap_window(journeys)
            since = None if window is None else earliest.get(ws, batch.now) - window
            state.load_profiles(identity.conn, ws, ids, since=since, full=True)
        wakes: dict[str, list[str]] = {}
        for event in events:
            if event.type == "internal" and event.event == WAKE_EVENT:
                iid = event.properties.get("instance")
                if isinstance(iid, str) and (event.workspace_id, iid) not in state.instances:
                    wakes.setdefault(event.workspace_id, []).append(iid)
        for ws, iids in wakes.items():
            state.load_instances(identity.conn, ws, iids)

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        ws = event.workspace_id
        journeys = self.journeys(ws)
        if journeys is None:
            return profile
        state = _state(batch)
        at = moment(event)
        if (ws, journeys.digest) not in self._synced:
            self._sync(batch, state, ws, journeys, at)
        if event.type == "internal" and event.event == PROFILE_UPDATE_EVENT:
            profile = _apply_update(profile, event.properties, at)
        reason = SUPPRESSION_EVENTS.get(event.event or "")
        if reason is not None and event.type != "internal":
            channel = event.properties.get("channel")
            state.suppress(
                batch.identity.conn,
                ws,
                profile.id,
                str(channel) if channel else "email",
                reason,
                at,
            )
        state.seen(ws, profile.id, event)
        if batch.identity.merged:
            state.absorb(batch, ws, profile.id)
        facts = _Facts(self, batch, state, ws, profile, at, _cap_window(journeys))
        if event.type == "internal" and event.event == WAKE_EVENT:
            self._wake(batch, state, journeys, event, facts, at)
            return profile
        moves = [
            (m.model, m.from_stage, m.to_stage)
            for m in stage_moves(batch, event)
            if m.profile_id == profile.id
        ]
        for instance in state.live(batch.identity.conn, ws, profile.id):
            journey = self._current_version(batch, state, journeys, instance, at)
            if journey is None:
                continue
            live = state.instances[(ws, instance.id)]
            advance = decide.on_event(live, journey, event, moves, facts, journeys.policy, at)
            if advance is not None:
                self._apply(batch, state, advance, at)
        for journey in journeys.journeys:
            membership = state.member(batch.identity.conn, ws, profile.id, journey.id)
            change = None
            if isinstance(journey.trigger, ScoreTrigger):
                change = facts.score_change(journey.trigger.model)
            fires, updated = decide.trigger_fires(
                journey, membership, event, moves, change, facts, at
            )
            if fires:
                entered, advance = decide.enter_journey(
                    journey, updated, ws, profile.id, event.message_id, facts, journeys.policy, at
                )
                if advance is not None:
                    state.set_member(ws, profile.id, journey.id, entered)
                    self._apply(batch, state, advance, at)
                    continue
            if updated != membership:
                state.set_member(ws, profile.id, journey.id, updated)
        return profile

    def _wake(
        self,
        batch: Batch,
        state: _State,
        journeys: JourneySet,
        event: Event,
        facts: _Facts,
        at: float,
    ) -> None:
        ws = event.workspace_id
        iid, token = event.properties.get("instance"), event.properties.get("token")
        if not isinstance(iid, str) or not isinstance(token, int):
            return
        instance = state.instances.get((ws, iid))
        if instance is None:
            state.load_instances(batch.identity.conn, ws, [iid])
            instance = state.instances.get((ws, iid))
        if instance is None or not instance.live:
            return
        journey = self._current_version(batch, state, journeys, instance, at)
        if journey is None:
            return
        instance = state.instances[(ws, iid)]
        advance = decide.on_timer(instance, journey, token, facts, journeys.policy, at)
        if advance is not None:
            self._apply(batch, state, advance, at)

    def _current_version(
        self, batch: Batch, state: _State, journeys: JourneySet, instance: Instance, at: float
    ) -> Journey | None:
        """The version the instance runs on, after a migration if the playbook maps its step;
        None (and the instance ended) when its journey was removed."""
        current = journeys.journey(instance.journey_id)
        if current is None:
            self._apply(
                batch, state, decide.end_instance(instance, "ended", REMOVED_REASON, at), at
            )
            return None
        if instance.version == current.version:
            return current
        moved = decide.migrate_instance(instance, current, at)
        if moved is not None:
            self._apply(batch, state, moved, at)
            return current
        pinned = self._journey(batch, instance.workspace_id, instance.journey_id, instance.version)
        if pinned is None:
            reason = f"version {instance.version} is not stored"
            self._apply(batch, state, decide.end_instance(instance, "ended", reason, at), at)
        return pinned

    def _sync(self, batch: Batch, state: _State, ws: str, journeys: JourneySet, at: float) -> None:
        """Once per playbook: register the versions, migrate mapped instances and end those of
        removed journeys, in bulk (run in this batch's transaction, before its own rows)."""
        self._synced.add((ws, journeys.digest))
        for journey in journeys.journeys:
            state.versions.append(
                (ws, journey.id, journey.version, _encoder.encode(journey.definition).decode(), at)
            )
            for old, new in journey.migrate.items():
                state.bulk.append(("migrate", (ws, journey.id, journey.version, old, new, at)))
        state.bulk.append(("remove", (ws, tuple(j.id for j in journeys.journeys), at)))

    def _apply(self, batch: Batch, state: _State, advance: Advance, at: float) -> None:
        instance = advance.instance
        ws, pid, iid = instance.workspace_id, instance.profile_id, instance.id
        state.put(instance)
        if not instance.live:
            member = state.members.get((ws, pid), {}).get(instance.journey_id)
            if member is not None and member.active == iid:
                cleared = msgspec.structs.replace(member, active=None)
                state.set_member(ws, pid, instance.journey_id, cleared)
        for line in advance.path:
            state.path.append(
                (
                    ws,
                    iid,
                    pid,
                    instance.journey_id,
                    instance.version,
                    line.step,
                    line.at,
                    line.kind,
                    line.detail,
                )
            )
        for effect in advance.effects:
            if isinstance(effect, QueueSend):
                payload = {
                    "channel": effect.channel,
                    "template": effect.template,
                    "journey": instance.journey_id,
                    "version": instance.version,
                    "step": effect.step,
                    "instance": iid,
                    "profile_id": pid,
                    "message_id": effect.message_id,
                    "transactional": effect.transactional,
                }
                batch.outbox.append(
                    OutboxRow(ws, "message", effect.channel, effect.message_id, payload, pid, at)
                )
                outcome = "rerouted" if effect.notes else "queued"
                reason = "; ".join(effect.notes)
                state.sends.append(
                    (
                        ws,
                        effect.message_id,
                        pid,
                        iid,
                        instance.journey_id,
                        effect.step,
                        effect.requested,
                        effect.channel,
                        effect.template,
                        int(effect.transactional),
                        at,
                        outcome,
                        reason,
                        None,
                    )
                )
                state.sent.setdefault((ws, pid), []).append(
                    SentRecord(at, effect.channel, effect.transactional)
                )
            elif isinstance(effect, RecordPolicy):
                state.sends.append(
                    (
                        ws,
                        effect.message_id,
                        pid,
                        iid,
                        instance.journey_id,
                        effect.step,
                        effect.requested,
                        effect.channel,
                        effect.template,
                        int(effect.transactional),
                        at,
                        effect.outcome,
                        effect.reason,
                        effect.until,
                    )
                )
            elif isinstance(effect, ScheduleWake):
                properties = {
                    "instance": iid,
                    "token": effect.token,
                    "journey": instance.journey_id,
                }
                batch.schedule(
                    Timer(ws, timer_key(iid), pid, effect.due_at, WAKE_EVENT, properties)
                )
            elif isinstance(effect, CancelWake):
                batch.cancel(ws, timer_key(iid))
            elif isinstance(effect, EmitEvent):
                batch.emits.append(Emit(ws, effect.key, effect.name, pid, at, effect.properties))
            elif isinstance(effect, CallWebhook):
                batch.outbox.append(
                    OutboxRow(
                        ws,
                        "webhook",
                        effect.webhook,
                        effect_key(effect.key),
                        {"body": effect.body},
                        pid,
                        at,
                    )
                )
            elif isinstance(effect, ChangeAudience):
                payload = {
                    "audience": effect.audience,
                    "action": effect.action,
                    "profile_id": pid,
                    "journey": instance.journey_id,
                    "step": effect.step,
                    "instance": iid,
                }
                batch.outbox.append(
                    OutboxRow(
                        ws, "audience", effect.audience, effect_key(effect.key), payload, pid, at
                    )
                )

    def flush(self, batch: Batch, conn: Conn) -> None:
        state = batch.extra.get("journeys")
        if not isinstance(state, _State):
            return
        conn.executemany(
            "INSERT INTO journey_versions (workspace_id, journey_id, version, definition, "
            "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, journey_id, version) "
            "DO NOTHING",
            state.versions,
        )
        for kind, params in state.bulk:
            if kind == "migrate":
                ws, jid, version, old, new, at = params
                conn.execute(
                    "INSERT INTO journey_path (workspace_id, instance_id, profile_id, journey_id, "
                    "version, step, at, kind, detail) SELECT workspace_id, id, profile_id, "
                    "journey_id, ?, ?, ?, 'migrated', ? FROM journey_instances WHERE "
                    "workspace_id = ? AND journey_id = ? AND version <> ? AND step = ? "
                    "AND status IN ('active', 'waiting')",
                    (version, new, at, f"{old} → {version[:12]}:{new}", ws, jid, version, old),
                )
                conn.execute(
                    "UPDATE journey_instances SET version = ?, step = ?, updated_at = ? "
                    "WHERE workspace_id = ? AND journey_id = ? AND version <> ? AND step = ? "
                    "AND status IN ('active', 'waiting')",
                    (version, new, at, ws, jid, version, old),
                )
            else:
                ws, kept, at = params
                where = f"workspace_id = ? AND status IN {_LIVE}"
                if kept:
                    where += f" AND journey_id NOT IN ({','.join('?' * len(kept))})"
                conn.execute(
                    "INSERT INTO journey_path (workspace_id, instance_id, profile_id, journey_id, "
                    "version, step, at, kind, detail) SELECT workspace_id, id, profile_id, "
                    f"journey_id, version, step, ?, 'ended', ? FROM journey_instances WHERE {where}",
                    (at, REMOVED_REASON, ws, *kept),
                )
                conn.execute(
                    "UPDATE journey_instances SET status = 'ended', reason = ?, ended_at = ?, "
                    f"updated_at = ? WHERE {where}",
                    (REMOVED_REASON, at, at, ws, *kept),
                )
        conn.executemany(
            "INSERT INTO journey_instances (workspace_id, id, profile_id, journey_id, version, "
            "step, status, holdout, entered_at, updated_at, ended_at, reason, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, id) DO "
            "UPDATE SET version = excluded.version, step = excluded.step, status = excluded.status, "
            "updated_at = excluded.updated_at, ended_at = excluded.ended_at, "
            "reason = excluded.reason, state = excluded.state",
            [
                (
                    i.workspace_id,
                    i.id,
                    i.profile_id,
                    i.journey_id,
                    i.version,
                    i.step,
                    i.status,
                    int(i.holdout),
                    i.entered_at,
                    i.updated_at,
                    i.ended_at,
                    i.reason,
                    _encoder.encode(i).decode(),
                )
                for key, i in state.instances.items()
                if key in state.dirty
            ],
        )
        conn.executemany(
            "INSERT INTO journey_profiles (workspace_id, profile_id, state) VALUES (?, ?, ?) "
            "ON CONFLICT (workspace_id, profile_id) DO UPDATE SET state = excluded.state",
            [
                (ws, pid, _encoder.encode(state.members[(ws, pid)]).decode())
                for ws, pid in state.dirty_members
            ],
        )
        conn.executemany(
            "INSERT INTO journey_path (workspace_id, instance_id, profile_id, journey_id, version, "
            "step, at, kind, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            state.path,
        )
        conn.executemany(
            "INSERT INTO sends (workspace_id, message_id, profile_id, instance_id, journey_id, "
            "step, requested_channel, channel, template, transactional, at, outcome, reason, "
            "until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            state.sends,
        )
        conn.executemany(
            "INSERT INTO suppressions (workspace_id, profile_id, channel, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, profile_id, channel) DO UPDATE SET "
            "reason = excluded.reason, created_at = excluded.created_at",
            state.new_suppressions,
        )
        conn.executemany(
            "UPDATE timers SET profile_id = ? WHERE workspace_id = ? AND key = ?",
            state.moved_timers,
        )
        _flush_merges(conn, batch.identity.merged, state.absorbed)


def _flush_merges(
    conn: Conn, merged: Mapping[tuple[str, str], str], absorbed: set[tuple[str, str]]
) -> None:
    """A merged-away profile's journey rows follow its survivor (instances, path, send records,
    suppressions; its memberships too once `absorb` folded them into the survivor's)."""
    for (ws, loser), _survivor in merged.items():
        final = _final(merged, ws, loser)
        for table in ("journey_instances", "journey_path", "sends"):
            conn.execute(
                f"UPDATE {table} SET profile_id = ? WHERE workspace_id = ? AND profile_id = ?",
                (final, ws, loser),
            )
        conn.execute(
            "INSERT INTO suppressions (workspace_id, profile_id, channel, reason, created_at) "
            "SELECT workspace_id, ?, channel, reason, created_at FROM suppressions "
            "WHERE workspace_id = ? AND profile_id = ? ON CONFLICT DO NOTHING",
            (final, ws, loser),
        )
        conn.execute(
            "DELETE FROM suppressions WHERE workspace_id = ? AND profile_id = ?", (ws, loser)
        )
        if (ws, loser) in absorbed:
            conn.execute(
                "DELETE FROM journey_profiles WHERE workspace_id = ? AND profile_id = ?",
                (ws, loser),
            )


def moment(event: Event) -> float:
    """The instant a decision is made at, from the log alone: a timer's due time, an engine
    event's time, or when an outside event was received (not the client's clock)."""
    if event.type == "internal":
        due = event.properties.get("dueAt")
        return float(due) if isinstance(due, int | float) else event.timestamp
    return event.received_at


def _apply_update(profile: Profile, properties: dict[str, Any], at: float) -> Profile:
    updates = dict(properties.get("traits") or {})
    add, remove = properties.get("add_tags") or [], properties.get("remove_tags") or []
    if add or remove:
        tags = profile.traits.get("tags")
        current = [str(t) for t in tags] if isinstance(tags, list) else []
        current = [t for t in current if t not in remove]
        current += [t for t in add if t not in current]
        updates["tags"] = current
    return identity_decide.set_traits(profile, updates, at) if updates else profile


@dataclass
class _State:
    """What the stage loaded and changed during one batch."""

    instances: dict[tuple[str, str], Instance] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    by_profile: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    members: dict[tuple[str, str], dict[str, Membership]] = field(default_factory=dict)
    dirty_members: set[tuple[str, str]] = field(default_factory=set)
    path: list[tuple[Any, ...]] = field(default_factory=list)
    sends: list[tuple[Any, ...]] = field(default_factory=list)
    sent: dict[tuple[str, str], list[SentRecord]] = field(default_factory=dict)
    suppressions: dict[tuple[str, str], list[Suppression]] = field(default_factory=dict)
    new_suppressions: list[tuple[Any, ...]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    bulk: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    events: dict[tuple[str, str], list[Event]] = field(default_factory=dict)
    scores: dict[tuple[str, str, str], float] = field(default_factory=dict)
    prefetched: bool = False
    known: set[tuple[str, str]] = field(default_factory=set)
    """Profiles identity knew when the stage prefetched; any other it resolves later in the
    batch is one it created."""
    absorbed: set[tuple[str, str]] = field(default_factory=set)
    """Merged-away profiles whose instances and memberships moved to their survivor."""
    moved_timers: list[tuple[str, str, str]] = field(default_factory=list)
    """(survivor, workspace, timer key) of the instances `absorb` moved."""

    def fresh(self, ws: str, pid: str) -> bool:
        """A profile identity created during this batch (after the prefetch): no stored rows."""
        return self.prefetched and (ws, pid) not in self.known

    def load_profiles(
        self,
        conn: Conn,
        ws: str,
        ids: list[str],
        *,
        since: float | None = None,
        full: bool = False,
    ) -> None:
        """Live instances and memberships of `ids`; with `full`, their suppressions too, and
        their sends after `since` (None: no frequency cap reads them, none are loaded)."""
        ids = [pid for pid in ids if (ws, pid) not in self.by_profile]
        for pid in ids:
            self.by_profile[(ws, pid)] = []
            self.members[(ws, pid)] = {}
            if full:
                self.suppressions.setdefault((ws, pid), [])
                self.sent.setdefault((ws, pid), [])
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT version, step, status, state, profile_id FROM journey_instances WHERE "
                f"workspace_id = ? AND profile_id IN ({marks}) AND status IN {_LIVE}",
                (ws, *chunk),
            )
            for row in rows:
                instance = _instance(row)
                if (ws, instance.id) not in self.instances:
                    self.instances[(ws, instance.id)] = instance
                self.by_profile[(ws, instance.profile_id)].append(instance.id)
            rows = conn.execute(
                f"SELECT profile_id, state FROM journey_profiles WHERE workspace_id = ? "
                f"AND profile_id IN ({marks})",
                (ws, *chunk),
            )
            for pid, raw in rows:
                self.members[(ws, str(pid))] = _membership_decoder.decode(raw)
            if not full:
                continue
            rows = conn.execute(
                f"SELECT profile_id, channel, reason FROM suppressions WHERE workspace_id = ? "
                f"AND profile_id IN ({marks})",
                (ws, *chunk),
            )
            for pid, channel, reason in rows:
                self.suppressions[(ws, str(pid))].append(Suppression(str(channel), str(reason)))
            if since is None:
                continue
            rows = conn.execute(
                f"SELECT profile_id, at, channel, transactional FROM sends WHERE workspace_id = ? "
                f"AND profile_id IN ({marks}) AND at > ? AND outcome IN ('queued', 'rerouted')",
                (ws, *chunk, since),
            )
            for pid, at, channel, transactional in rows:
                self.sent[(ws, str(pid))].append(
                    SentRecord(float(at), str(channel), bool(transactional))
                )

    def _ensure(self, conn: Conn, ws: str, pid: str) -> None:
        if (ws, pid) in self.by_profile:
            return
        if self.fresh(ws, pid):
            self.by_profile[(ws, pid)] = []
            self.members.setdefault((ws, pid), {})
            self.suppressions.setdefault((ws, pid), [])
            self.sent.setdefault((ws, pid), [])
        else:
            self.load_profiles(conn, ws, [pid])

    def load_instances(self, conn: Conn, ws: str, ids: list[str]) -> None:
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT version, step, status, state, profile_id FROM journey_instances WHERE "
                f"workspace_id = ? AND id IN ({marks})",
                (ws, *chunk),
            )
            for row in rows:
                instance = _instance(row)
                self.instances.setdefault((ws, instance.id), instance)

    def live(self, conn: Conn, ws: str, pid: str) -> list[Instance]:
        self._ensure(conn, ws, pid)
        found = [self.instances[(ws, iid)] for iid in self.by_profile[(ws, pid)]]
        return [i for i in found if i.live]

    def put(self, instance: Instance) -> None:
        key = (instance.workspace_id, instance.id)
        if key not in self.instances:
            listed = self.by_profile.setdefault((instance.workspace_id, instance.profile_id), [])
            if instance.id not in listed:
                listed.append(instance.id)
        self.instances[key] = instance
        self.dirty.add(key)

    def member(self, conn: Conn, ws: str, pid: str, journey_id: str) -> Membership:
        if (ws, pid) not in self.members:
            self._ensure(conn, ws, pid)
        found = self.members[(ws, pid)].get(journey_id, Membership())
        if found.active is not None:
            active = self.instances.get((ws, found.active))
            if active is None or not active.live:
                found = msgspec.structs.replace(found, active=None)
        return found

    def set_member(self, ws: str, pid: str, journey_id: str, membership: Membership) -> None:
        self.members.setdefault((ws, pid), {})[journey_id] = membership
        self.dirty_members.add((ws, pid))

    def sent_records(self, conn: Conn, ws: str, pid: str, since: float | None) -> list[SentRecord]:
        """Sends after `since` (all the policy's caps look back at most that far); None: no
        cap reads them."""
        if (ws, pid) not in self.sent:
            found: list[SentRecord] = []
            if since is not None and not self.fresh(ws, pid):
                rows = conn.execute(
                    "SELECT at, channel, transactional FROM sends WHERE workspace_id = ? "
                    "AND profile_id = ? AND at > ? AND outcome IN ('queued', 'rerouted')",
                    (ws, pid, since),
                )
                found = [SentRecord(float(a), str(c), bool(t)) for a, c, t in rows]
            self.sent[(ws, pid)] = found
        return self.sent[(ws, pid)]

    def suppressed(self, conn: Conn, ws: str, pid: str) -> list[Suppression]:
        if (ws, pid) not in self.suppressions:
            found: list[Suppression] = []
            if not self.fresh(ws, pid):
                rows = conn.execute(
                    "SELECT channel, reason FROM suppressions WHERE workspace_id = ? "
                    "AND profile_id = ?",
                    (ws, pid),
                )
                found = [Suppression(str(c), str(r)) for c, r in rows]
            self.suppressions[(ws, pid)] = found
        return self.suppressions[(ws, pid)]

    def suppress(self, conn: Conn, ws: str, pid: str, channel: str, reason: str, at: float) -> None:
        self.suppressed(conn, ws, pid).append(Suppression(channel, reason))
        self.new_suppressions.append((ws, pid, channel, reason, at))

    def absorb(self, batch: Batch, ws: str, pid: str) -> None:
        """Move to `pid` what profiles merged into it during this batch had: their live
        instances, their memberships (entries add up), suppressions, recent sends and the
        batch's events, so the survivor's events see them. The rows follow in `flush`."""
        merged = batch.identity.merged
        conn = batch.identity.conn
        for (mws, loser), _survivor in list(merged.items()):
            if mws != ws or (ws, loser) in self.absorbed or _final(merged, ws, loser) != pid:
                continue
            self.absorbed.add((ws, loser))
            self._ensure(conn, ws, pid)
            self._ensure(conn, ws, loser)
            listed = self.by_profile[(ws, pid)]
            for iid in self.by_profile.pop((ws, loser), []):
                moved = msgspec.structs.replace(self.instances[(ws, iid)], profile_id=pid)
                self.instances[(ws, iid)] = moved
                self.dirty.add((ws, iid))
                # Its timer names the survivor (a profile created and merged within one
                # batch never gets a row a firing could be redirected through).
                pending = batch.timers.get((ws, timer_key(iid)))
                if pending is not None:
                    batch.timers[(ws, timer_key(iid))] = replace(pending, profile_id=pid)
                self.moved_timers.append((pid, ws, timer_key(iid)))
                if iid not in listed:
                    listed.append(iid)
            self.by_profile[(ws, loser)] = []
            for journey_id, theirs in self.members.pop((ws, loser), {}).items():
                ours = self.members[(ws, pid)].get(journey_id)
                self.set_member(ws, pid, journey_id, _merge_membership(ours, theirs))
            self.members[(ws, loser)] = {}
            self.dirty_members.discard((ws, loser))
            kept = self.suppressed(conn, ws, pid)
            for entry in self.suppressions.get((ws, loser), []):
                if entry not in kept:
                    kept.append(entry)
            self.sent.setdefault((ws, pid), []).extend(self.sent.get((ws, loser), []))
            self.events.setdefault((ws, pid), []).extend(self.events.pop((ws, loser), []))

    def seen(self, ws: str, pid: str, event: Event) -> None:
        if event.type != "internal":
            self.events.setdefault((ws, pid), []).append(event)


def _final(merged: Mapping[tuple[str, str], str], ws: str, pid: str) -> str:
    for _ in range(100):
        nxt = merged.get((ws, pid))
        if nxt is None:
            break
        pid = nxt
    return pid


def _merge_membership(ours: Membership | None, theirs: Membership) -> Membership:
    """One profile's history with a journey after another profile was merged into it."""
    if ours is None:
        return theirs
    times = [t for t in (ours.last_entered_at, theirs.last_entered_at) if t is not None]
    return Membership(
        entries=ours.entries + theirs.entries,
        last_entered_at=max(times) if times else None,
        active=ours.active if ours.active is not None else theirs.active,
        in_segment=ours.in_segment or theirs.in_segment,
        score_above=ours.score_above if ours.score_above is not None else theirs.score_above,
    )


def _cap_window(journeys: JourneySet | None) -> float | None:
    """How far back the frequency caps look (None: no caps, recent sends are not read)."""
    caps = journeys.policy.caps if journeys is not None else ()
    return max(cap.per for cap in caps) if caps else None


def _instance(row: tuple[Any, ...]) -> Instance:
    version, step, status, raw, profile_id = row
    instance = _instance_decoder.decode(raw)
    # The columns win: bulk migrations, removals and profile merges update them without
    # rewriting the state.
    return msgspec.structs.replace(
        instance, version=version, step=step, status=status, profile_id=str(profile_id)
    )


def _state(batch: Batch) -> _State:
    state = batch.extra.get("journeys")
    if state is None:
        state = _State()
        batch.extra["journeys"] = state
    assert isinstance(state, _State)
    return state


class _Facts:
    """Answers the decisions' questions about one profile, from the batch and the database."""

    def __init__(
        self,
        stage: JourneyStage,
        batch: Batch,
        state: _State,
        ws: str,
        profile: Profile,
        at: float,
        window: float | None = None,
    ) -> None:
        self._window = window
        self._stage = stage
        self._batch = batch
        self._state = state
        self._ws = ws
        self._profile = profile
        self._at = at

    @property
    def traits(self) -> dict[str, Any]:
        return self._profile.traits

    def _score_state(self, model: str) -> ScoreState | None:
        key = (self._ws, self._profile.id, model)
        cache = self._batch.extra.get("scoring")
        for attribute in ("states", "loaded"):
            found = getattr(cache, attribute, {}).get(key) if cache is not None else None
            if isinstance(found, ScoreState):
                return found
        rows = self._batch.identity.conn.execute(
            "SELECT state FROM scores WHERE workspace_id = ? AND profile_id = ? AND model = ?", key
        )
        return _score_decoder.decode(rows[0][0]) if rows else None

    def score(self, model: str) -> float | None:
        found = self._score_state(model)
        return None if found is None else round(total_at(found, self._at), 6)

    def score_change(self, model: str) -> tuple[float, float] | None:
        """The model's total before and after this event (per batch, from the stored state)."""
        key = (self._ws, self._profile.id, model)
        after = self.score(model) or 0.0
        before = self._state.scores.get(key)
        if before is None:
            rows = self._batch.identity.conn.execute(
                "SELECT state FROM scores WHERE workspace_id = ? AND profile_id = ? AND model = ?",
                key,
            )
            before = total_at(_score_decoder.decode(rows[0][0]), self._at) if rows else 0.0
        self._state.scores[key] = after
        return None if before == after else (before, after)

    def stage(self, model: str) -> str | None:
        found = self._score_state(model)
        return None if found is None else found.stage

    def event_count(self, name: str, since: float | None, where: tuple[Condition, ...]) -> int:
        params: list[Any] = [self._ws, self._profile.id, name]
        clause = ""
        if since is not None:
            clause = " AND received_at >= ?"
            params.append(since)
        rows = self._batch.identity.conn.execute(
            "SELECT body, seq FROM events WHERE workspace_id = ? AND profile_id = ? AND event = ?"
            + clause,
            tuple(params),
        )
        count = 0
        seqs = set()
        for body, seq in rows:
            seqs.add(int(seq))
            if not where or _body_matches(body, where):
                count += 1
        for event in self._state.events.get((self._ws, self._profile.id), []):
            if event.event != name or event.seq in seqs:
                continue
            if since is not None and event.received_at < since:
                continue
            if all(condition_holds(event, c) for c in where):
                count += 1
        return count

    def recipient(self) -> Recipient:
        conn = self._batch.identity.conn
        enabled = self._stage._channels_enabled(self._ws) if self._stage._channels_enabled else None
        since = None if self._window is None else self._at - self._window
        return Recipient(
            traits=self._profile.traits,
            suppressions=tuple(self._state.suppressed(conn, self._ws, self._profile.id)),
            sent=tuple(self._state.sent_records(conn, self._ws, self._profile.id, since)),
            channel_enabled=enabled,
        )


def _body_matches(body: str, where: tuple[Condition, ...]) -> bool:
    data = _json.decode(body)
    probe = Event(
        seq=0,
        workspace_id="",
        message_id="",
        type="track",
        timestamp=0.0,
        received_at=0.0,
        body=data if isinstance(data, dict) else {},
    )
    return all(condition_holds(probe, c) for c in where)
