"""The journeys stage's shell: loads instances and memberships for the batch's profiles, calls
the pure decisions (`journeys.decide`, and `policy.decide` for every send), and writes instance
rows, the path, send decisions, outbox rows and timers in the processor's batch transaction.

Runs after scoring (it reads the stage moves and scores scoring made for the same event). A
journey timer is one row per instance (`journey:<instance>`): rescheduling moves it, and its
firing carries a token, so a firing the instance no longer waits for changes nothing. A
segment journey may keep one more per profile (`segment:<journey>:<profile>`), for the instant
time alone brings the profile into its segment (`journeys.segments`); so may a `score` entry,
for the instant `half_life` fading makes its test start to hold.

The batch's state and its loading are in `journeys.state`, the answers to the decisions'
questions in `journeys.facts`, and the rows a decision becomes (and their SQL) in
`journeys.writes`; this module holds the stage itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import msgspec

from leadloop.errors import PlaybookError
from leadloop.identity.model import Profile
from leadloop.journeys import decide, segments
from leadloop.journeys.config import journey_from_definition, parse_journeys
from leadloop.journeys.facts import ProfileFacts
from leadloop.journeys.model import (
    SEGMENT_EVENT,
    SUPPRESSION_EVENTS,
    WAKE_EVENT,
    Instance,
    Journey,
    JourneySet,
    Membership,
    ScoreTrigger,
    SegmentTrigger,
)
from leadloop.journeys.runner import end_instance
from leadloop.journeys.state import BatchState, batch_state, cap_window
from leadloop.journeys.writes import REMOVED_REASON, apply_advance, count_variant, flush_batch
from leadloop.log.batch import Batch, Conn, Timer
from leadloop.log.model import Event
from leadloop.playbook.model import Playbook
from leadloop.scoring.service import stage_moves

log = logging.getLogger("leadloop.journeys")
CLICK_EVENT = "Email Link Clicked"
_json = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


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
        knows after identity's prefetch, and the instances its timers name. A profile identity
        creates later in the batch is new: it has no rows, so it costs no lookup at all."""
        state = batch_state(batch)
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
        # A profile only a timer names in this batch needs neither its memberships nor its
        # other instances: a wake-up enters nothing and moves only the instance it names,
        # loaded by id below (`live` and `member` still load the rest if something asks).
        woken: set[tuple[str, str]] = set()
        acting = {(ws, pid) for (ws, _key), pid in identity.owners.items() if pid is not None}
        for event in events:
            at = moment(event)
            if at < earliest.get(event.workspace_id, at + 1):
                earliest[event.workspace_id] = at
            if event.type == "internal":
                named = event.body.get("profileId")
                if isinstance(named, str):
                    if event.event == WAKE_EVENT:
                        woken.add((event.workspace_id, named))
                    else:
                        acting.add((event.workspace_id, named))
        for ws, ids in by_ws.items():
            journeys = self.journeys(ws)
            window = cap_window(journeys)
            since = None if window is None else earliest.get(ws, batch.now) - window
            state.load_contact(identity.conn, ws, ids, since)
            acted = [pid for pid in ids if (ws, pid) not in woken or (ws, pid) in acting]
            state.load_live(identity.conn, ws, acted)
            state.load_members(identity.conn, ws, acted)
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
        state = batch_state(batch)
        at = moment(event)
        if (ws, journeys.digest) not in self._synced:
            self._sync(batch, state, ws, journeys, at)
        # From a client's track call or from the engine's own channels (a one-click
        # unsubscribe, a bounce receipt): both put the profile on the list.
        reason = SUPPRESSION_EVENTS.get(event.event or "")
        if reason == "bounced" and event.properties.get("permanent") is False:
            # A soft bounce (a full mailbox, greylisting) is only recorded: the address may
            # take mail again, and "bounced" would stop even transactional sends for good.
            reason = None
        if reason is not None:
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
        if event.type == "internal" and event.event == CLICK_EVENT:
            self._count_click(batch, state, event)
        if batch.identity.merged:
            state.absorb(batch, ws, profile.id)
        facts = ProfileFacts(
            self._channels_enabled, batch, state, ws, profile, at, cap_window(journeys), event.seq
        )
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
                apply_advance(batch, state, advance, at)
        for journey in journeys.journeys:
            membership = state.member(batch.identity.conn, ws, profile.id, journey.id)
            reading = None
            if isinstance(journey.trigger, ScoreTrigger):
                reading = facts.score_reading(journey.trigger.model)
            fires, updated = decide.trigger_fires(
                journey, membership, event, moves, reading, facts, at
            )
            if fires:
                updated, advance = decide.enter_journey(
                    journey,
                    updated,
                    ws,
                    profile.id,
                    event.message_id,
                    facts,
                    journeys.policy,
                    at,
                    event=event,
                    moves=moves,
                )
                if advance is not None:
                    apply_advance(batch, state, advance, at)
            if isinstance(journey.trigger, SegmentTrigger | ScoreTrigger):
                updated = self._watch(batch, journey, updated, facts, ws, profile.id, at)
            if updated != membership:
                state.set_member(ws, profile.id, journey.id, updated)
        return profile

    @staticmethod
    def _watch(
        batch: Batch,
        journey: Journey,
        membership: Membership,
        facts: ProfileFacts,
        ws: str,
        pid: str,
        at: float,
    ) -> Membership:
        """Keep the timer that notices the segment change, or the score crossing, by time
        alone (`journeys.segments`)."""
        updated, change = segments.watch_segment(journey, membership, facts, at)
        key = segments.timer_key(journey.id, pid)
        if isinstance(change, segments.WatchSegment):
            properties = {"journey": journey.id}
            batch.schedule(Timer(ws, key, pid, change.due_at, SEGMENT_EVENT, properties))
        elif isinstance(change, segments.UnwatchSegment):
            batch.cancel(ws, key)
        return updated

    @staticmethod
    def _count_click(batch: Batch, state: BatchState, event: Event) -> None:
        """A message's first click counts for its variant if its send was counted: not a
        message the step sent before it had variants, whatever version is live now, and still
        one of a variant a later version removed (an instance pinned to the old one sends it)."""
        props = event.properties
        names = (props.get("message_id"), props.get("journey"), props.get("step"))
        template = props.get("template")
        if props.get("first_click") is not True or not isinstance(template, str):
            return
        message, journey_id, step_id = names
        if not (
            isinstance(message, str) and isinstance(journey_id, str) and isinstance(step_id, str)
        ):
            return
        ws, conn = event.workspace_id, batch.identity.conn
        if state.counted_send(conn, ws, message, journey_id, step_id, template):
            count_variant(batch, state, ws, journey_id, step_id, template, clicks=1)

    def _wake(
        self,
        batch: Batch,
        state: BatchState,
        journeys: JourneySet,
        event: Event,
        facts: ProfileFacts,
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
            apply_advance(batch, state, advance, at)

    def _current_version(
        self, batch: Batch, state: BatchState, journeys: JourneySet, instance: Instance, at: float
    ) -> Journey | None:
        """The version the instance runs on, after a migration if the playbook maps its step;
        None (and the instance ended) when its journey was removed."""
        current = journeys.journey(instance.journey_id)
        if current is None:
            apply_advance(batch, state, end_instance(instance, "ended", REMOVED_REASON, at), at)
            return None
        if instance.version == current.version:
            return current
        moved = decide.migrate_instance(instance, current, at)
        if moved is not None:
            apply_advance(batch, state, moved, at)
            return current
        pinned = self._journey(batch, instance.workspace_id, instance.journey_id, instance.version)
        if pinned is None:
            reason = f"version {instance.version} is not stored"
            apply_advance(batch, state, end_instance(instance, "ended", reason, at), at)
        return pinned

    def _sync(
        self, batch: Batch, state: BatchState, ws: str, journeys: JourneySet, at: float
    ) -> None:
        """Once per playbook: register the versions, migrate mapped instances and end those of
        removed journeys, in bulk (run in this batch's transaction, before its own rows). The
        bulk statements reach instances of any profile, so the batch is a barrier."""
        self._synced.add((ws, journeys.digest))
        state.synced.append((ws, journeys.digest))
        batch.barrier = True
        for journey in journeys.journeys:
            state.versions.append(
                (ws, journey.id, journey.version, _encoder.encode(journey.definition).decode(), at)
            )
            for old, new in journey.migrate.items():
                state.bulk.append(("migrate", (ws, journey.id, journey.version, old, new, at)))
        state.bulk.append(("remove", (ws, tuple(j.id for j in journeys.journeys), at)))

    def flush(self, batch: Batch, conn: Conn) -> None:
        """Write the batch's journey rows in the processor's transaction."""
        flush_batch(batch, conn)

    def discard(self, batch: Batch) -> None:
        """The processor threw `batch` away to decide it again: sync its playbooks again too."""
        state = batch.extra.get("journeys")
        if isinstance(state, BatchState):
            self._synced.difference_update(state.synced)


def moment(event: Event) -> float:
    """The instant a decision is made at, from the log alone: a timer's due time, an engine
    event's time, or when an outside event was received (not the client's clock)."""
    if event.type == "internal":
        due = event.properties.get("dueAt")
        return float(due) if isinstance(due, int | float) else event.timestamp
    return event.received_at
