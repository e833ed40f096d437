"""What the journeys stage loads and changes during one batch, kept in `batch.extra["journeys"]`.

Per profile it holds the live instances, memberships, suppressions and recent sends, loaded in
bulk by the stage's prefetch (or lazily for a profile the prefetch did not know), and the rows
the batch will write: `writes.flush_batch` turns them into SQL in the processor's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from leadloop.journeys.model import Instance, JourneySet, Membership
from leadloop.log.batch import Batch, Conn
from leadloop.log.model import Event
from leadloop.personalization.bandit import Arm
from leadloop.policy.model import SentRecord, Suppression
from leadloop.scoring.model import ScoreState

_instance_decoder = msgspec.json.Decoder(Instance)
_membership_decoder = msgspec.json.Decoder(dict[str, Membership])
_CHUNK = 500
LIVE_STATUSES = "('active', 'waiting', 'holdout')"


def timer_key(instance_id: str) -> str:
    return f"journey:{instance_id}"


@dataclass
class BatchState:
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
    synced: list[tuple[str, str]] = field(default_factory=list)
    """(workspace, playbook digest) this batch registered: undone if the batch is discarded."""
    events: dict[tuple[str, str], list[Event]] = field(default_factory=dict)
    scores: dict[tuple[str, str, str], ScoreState | None] = field(default_factory=dict)
    """Per (workspace, profile, model), the score state as the profile's latest event of this
    batch left it: what the next one finds just before it (`facts.score_reading`)."""
    prefetched: bool = False
    known: set[tuple[str, str]] = field(default_factory=set)
    """Profiles identity knew when the stage prefetched; any other it resolves later in the
    batch is one it created."""
    absorbed: set[tuple[str, str]] = field(default_factory=set)
    """Merged-away profiles whose instances and memberships moved to their survivor."""
    moved_timers: list[tuple[str, str, str]] = field(default_factory=list)
    """(survivor, workspace, timer key) of the instances `absorb` moved."""
    variant_counts: dict[tuple[str, str, str], dict[str, list[int]]] = field(default_factory=dict)
    """Per (workspace, journey, step) read this batch: per template, [sends, clicks] as stored
    plus this batch's counts so far (a later event of the batch sees the earlier ones')."""
    variant_delta: dict[tuple[str, str, str, str], list[int]] = field(default_factory=dict)
    """Per (workspace, journey, step, template): [sends, clicks] this batch adds."""
    variant_sends: set[tuple[str, str, str, str, str]] = field(default_factory=set)
    """(workspace, message, journey, step, template) of this batch's counted sends."""

    def variant_arms(
        self, conn: Conn, ws: str, journey: str, step: str, templates: tuple[str, ...]
    ) -> list[Arm]:
        counts = self._variant_counts(conn, ws, journey, step)
        return [Arm(*counts.get(t, (0, 0))) for t in templates]

    def count_variant(
        self, conn: Conn, ws: str, journey: str, step: str, template: str, sends: int, clicks: int
    ) -> None:
        counts = self._variant_counts(conn, ws, journey, step).setdefault(template, [0, 0])
        delta = self.variant_delta.setdefault((ws, journey, step, template), [0, 0])
        for pair in (counts, delta):
            pair[0] += sends
            pair[1] += clicks

    def counted_send(
        self, conn: Conn, ws: str, message: str, journey: str, step: str, template: str
    ) -> bool:
        """Whether the message was queued with that template by a variant set of that step
        (its send is in `variant_stats`), in this batch or before."""
        if (ws, message, journey, step, template) in self.variant_sends:
            return True
        return bool(
            conn.execute(
                "SELECT 1 FROM sends WHERE workspace_id = ? AND message_id = ? AND variant = 1 "
                "AND journey_id = ? AND step = ? AND template = ?",
                (ws, message, journey, step, template),
            )
        )

    def _variant_counts(self, conn: Conn, ws: str, journey: str, step: str) -> dict[str, list[int]]:
        key = (ws, journey, step)
        counts = self.variant_counts.get(key)
        if counts is None:
            rows = conn.execute(
                "SELECT template, sends, clicks FROM variant_stats WHERE workspace_id = ? "
                "AND journey_id = ? AND step_id = ?",
                key,
            )
            counts = self.variant_counts[key] = {str(t): [int(a), int(b)] for t, a, b in rows}
        return counts

    def fresh(self, ws: str, pid: str) -> bool:
        """A profile identity created during this batch (after the prefetch): no stored rows."""
        return self.prefetched and (ws, pid) not in self.known

    def load_live(self, conn: Conn, ws: str, ids: list[str]) -> None:
        """The live instances of `ids`, listed per profile (a profile created in this batch
        has none)."""
        ids = [pid for pid in ids if (ws, pid) not in self.by_profile]
        for pid in ids:
            self.by_profile[(ws, pid)] = []
        ids = [pid for pid in ids if not self.fresh(ws, pid)]
        for chunk, marks in _chunks(ids):
            rows = conn.execute(
                f"SELECT version, step, status, state, profile_id FROM journey_instances WHERE "
                f"workspace_id = ? AND profile_id IN ({marks}) AND status IN {LIVE_STATUSES}",
                (ws, *chunk),
            )
            for row in rows:
                instance = _instance(row)
                # One this batch already holds (e.g. loaded for its timer) is newer.
                self.instances.setdefault((ws, instance.id), instance)
                self.by_profile[(ws, instance.profile_id)].append(instance.id)

    def load_contact(self, conn: Conn, ws: str, ids: list[str], since: float | None) -> None:
        """What the contact policy reads about `ids`: their suppressions, and their sends after
        `since` (None: no frequency cap reads them, none are loaded)."""
        ids = [pid for pid in ids if (ws, pid) not in self.suppressions]
        for pid in ids:
            self.suppressions[(ws, pid)] = []
            self.sent.setdefault((ws, pid), [])
        ids = [pid for pid in ids if not self.fresh(ws, pid)]
        for chunk, marks in _chunks(ids):
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

    def load_members(self, conn: Conn, ws: str, ids: list[str]) -> None:
        """The journey memberships of `ids` (a profile created in this batch has none)."""
        ids = [pid for pid in ids if (ws, pid) not in self.members]
        for pid in ids:
            self.members[(ws, pid)] = {}
        ids = [pid for pid in ids if not self.fresh(ws, pid)]
        for chunk, marks in _chunks(ids):
            rows = conn.execute(
                f"SELECT profile_id, state FROM journey_profiles WHERE workspace_id = ? "
                f"AND profile_id IN ({marks})",
                (ws, *chunk),
            )
            for pid, raw in rows:
                self.members[(ws, str(pid))] = _membership_decoder.decode(raw)

    def _ensure(self, conn: Conn, ws: str, pid: str) -> None:
        """The profile's live instances and memberships are loaded."""
        key = (ws, pid)
        if self.fresh(ws, pid):
            self.members.setdefault(key, {})
            self.by_profile.setdefault(key, [])
            return
        if key not in self.members:
            self.load_members(conn, ws, [pid])
        if key not in self.by_profile:
            self.load_live(conn, ws, [pid])

    def load_instances(self, conn: Conn, ws: str, ids: list[str]) -> None:
        for chunk, marks in _chunks(ids):
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
            # A new instance: its profile's live instances were loaded before it could enter.
            listed = self.by_profile.get((instance.workspace_id, instance.profile_id))
            assert listed is not None, "an instance entered before its profile was loaded"
            listed.append(instance.id)
        self.instances[key] = instance
        self.dirty.add(key)

    def member(self, conn: Conn, ws: str, pid: str, journey_id: str) -> Membership:
        self._ensure(conn, ws, pid)
        return self._current(ws, self.members[(ws, pid)].get(journey_id, Membership()))

    def _current(self, ws: str, found: Membership) -> Membership:
        """The membership with `active` cleared when that instance has ended (an ending does
        not rewrite the membership row; only live instances are loaded for a profile)."""
        if found.active is not None:
            active = self.instances.get((ws, found.active))
            if active is None or not active.live:
                return msgspec.structs.replace(found, active=None)
        return found

    def set_member(self, ws: str, pid: str, journey_id: str, membership: Membership) -> None:
        # The row holds every journey's membership: the others must have been loaded.
        assert (ws, pid) in self.members, "set_member before the memberships were loaded"
        self.members[(ws, pid)][journey_id] = membership
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
        conn = batch.identity.conn
        for loser in batch.identity.absorbed_by(ws, pid):
            if (ws, loser) in self.absorbed:
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
                    batch.timers[(ws, timer_key(iid))] = msgspec.structs.replace(
                        pending, profile_id=pid
                    )
                self.moved_timers.append((pid, ws, timer_key(iid)))
                if iid not in listed:
                    listed.append(iid)
            self.by_profile[(ws, loser)] = []
            for journey_id, theirs in self.members.pop((ws, loser), {}).items():
                ours = self.members[(ws, pid)].get(journey_id)
                merged_member = _merge_membership(
                    None if ours is None else self._current(ws, ours), self._current(ws, theirs)
                )
                self.set_member(ws, pid, journey_id, merged_member)
            self.members[(ws, loser)] = {}
            self.dirty_members.discard((ws, loser))
            kept = self.suppressed(conn, ws, pid)
            for entry in self.suppressions.get((ws, loser), []):
                if entry not in kept:
                    kept.append(entry)
            self.sent.setdefault((ws, pid), []).extend(self.sent.get((ws, loser), []))
            self.events.setdefault((ws, pid), []).extend(self.events.pop((ws, loser), []))

    def seen(self, ws: str, pid: str, event: Event) -> None:
        # The engine's events too: an open or a receipt counts in an `event` condition as its
        # stored row does once the batch is written.
        self.events.setdefault((ws, pid), []).append(event)


def _chunks(ids: list[str]) -> Iterator[tuple[list[str], str]]:
    """`ids` in chunks small enough for one `IN (...)`, each with its placeholders."""
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def _merge_membership(ours: Membership | None, theirs: Membership) -> Membership:
    """One profile's history with a journey after another profile was merged into it."""
    if ours is None:
        return msgspec.structs.replace(theirs, segment_due=None)
    times = [t for t in (ours.last_entered_at, theirs.last_entered_at) if t is not None]
    later = max((ours, theirs), key=lambda m: m.skipped_at or 0.0)
    scored = ours if ours.score_above is not None else theirs
    return Membership(
        entries=ours.entries + theirs.entries,
        last_entered_at=max(times) if times else None,
        active=ours.active if ours.active is not None else theirs.active,
        in_segment=ours.in_segment or theirs.in_segment,
        # What held at the survivor's last evaluation, else at the absorbed profile's.
        score_above=scored.score_above,
        score_test=scored.score_test,
        skipped=ours.skipped + theirs.skipped,
        skipped_at=later.skipped_at,
        skip_reason=later.skip_reason,
        # The survivor's own timer; the merging event watches the merged segment anew.
        segment_due=ours.segment_due,
    )


def cap_window(journeys: JourneySet | None) -> float | None:
    """How far back the frequency caps look (None: no caps, recent sends are not read)."""
    return journeys.cap_window if journeys is not None else None


def _instance(row: tuple[Any, ...]) -> Instance:
    version, step, status, raw, profile_id = row
    instance = _instance_decoder.decode(raw)
    # The columns win: bulk migrations, removals and profile merges update them without
    # rewriting the state.
    return msgspec.structs.replace(
        instance, version=version, step=step, status=status, profile_id=str(profile_id)
    )


def batch_state(batch: Batch) -> BatchState:
    state = batch.extra.get("journeys")
    if state is None:
        state = BatchState()
        batch.extra["journeys"] = state
    assert isinstance(state, BatchState)
    return state
