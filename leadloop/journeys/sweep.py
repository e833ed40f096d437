"""A segment journey applied to a running workspace, or a new version that changes its segment:
its segment is evaluated once for every profile, so the people already in it, or whom time
alone will bring in, are reached without an event of their own (a silent person sends none).

A journey with a `score` entry is swept the same way when it is new, its test changed, or a
rescore changed its model (the model's version counts in its digest): each profile gets the
timer at the instant `half_life` fading makes the test start to hold, and where it does, the
failed test is recorded on its membership as an event's evaluation would record it
(`segments.sweep_segment`), so the firing is a crossing.

The sweep decides no entry itself. Per profile it sets the journey's segment timer
(`journeys.segments.sweep_segment`): due now where the profile's place in the segment differs
from what its membership says, at the next instant time alone changes it, or not at all. The
firing is an event of the log that the processor decides as any other, so an entry follows the
journey's re-entry rule and a replay of the log decides it again.

Runs in chunks of `CHUNK` profiles in id order, each a processor job of its own (between two
batches, so events are processed between two chunks) written in one transaction with where
the sweep stands: the `cursors` row `segment-sweep:<workspace>:<journey>` holds a `Position`
(JSON: the segment's digest, the last profile done) while it runs, and the segment's digest
alone once every profile is done. A journey whose recorded digest is its segment's is not swept
again; a sweep cut short goes on at the next start from the profile after the last one done,
for the same segment, and starts again from the first for a changed one. An event processed
between two chunks is decided as any other: a profile it enters is seen in the segment when the
sweep reaches it (no timer due now), and one swept before it has one timer, whichever of the
two comes first deciding the entry. Evaluating a profile again is harmless anyway: one timer
per profile and journey, and a profile already seen in the segment is not entered again.

Cost: every profile's traits are read once (one indexed range of `profiles` per chunk); scores
only when the segment tests one; events only for the profiles its trait, score and stage
conditions let through, by name: a count for a condition without window or `where` (`{event:
Visited}`), the rows within the longest window for the others (all of them only when a
`where` has no window). Writes: one timer and one membership row per profile the segment
concerns, and a firing (an event) per profile re-evaluated now.

A journey no longer a segment (or `score` entry) journey of the playbook loses its record (or its position, removed
mid-sweep): while it is not, no timer watches its segment, so adding it back sweeps again.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from tqdm import tqdm

from leadloop.identity.model import Profile
from leadloop.journeys import segments
from leadloop.journeys.facts import body_matches
from leadloop.journeys.model import (
    SEGMENT_EVENT,
    Journey,
    Membership,
    ScoreTrigger,
    SegmentTrigger,
    Test,
)
from leadloop.log.batch import Conn
from leadloop.log.writer import Writer
from leadloop.personalization.bandit import Arm
from leadloop.policy.model import Recipient
from leadloop.scoring.model import Condition, ScoreState, total_at

log = logging.getLogger("leadloop.journeys")
CHUNK = 500
_profile_decoder = msgspec.json.Decoder(Profile)
_member_decoder = msgspec.json.Decoder(dict[str, Membership])
_score_decoder = msgspec.json.Decoder(ScoreState)
_encoder = msgspec.json.Encoder()


def swept(journey: Journey) -> bool:
    """Whether the journey's entry is swept: a segment, or a `score` crossing (whose test
    fading can make start to hold)."""
    return isinstance(journey.trigger, SegmentTrigger | ScoreTrigger)


def segment_digest(journey: Journey, versions: Mapping[str, str] | None = None) -> str:
    """What the sweep is done for: the parsed segment (its conditions and windows), or the
    `score` entry's test with its model's version (`versions`, by model id: a rescore moves
    every profile's crossing instant); not the journey's version, which its steps and re-entry
    rule change too."""
    trigger = journey.trigger
    raw = _encoder.encode(trigger)
    if isinstance(trigger, ScoreTrigger):
        raw += b" " + (versions or {}).get(trigger.model, "").encode()
    return hashlib.sha256(raw).hexdigest()


def marker(workspace: str, journey_id: str) -> str:
    return f"segment-sweep:{workspace}:{journey_id}"


def forget_removed(conn: Conn, writer: Writer, workspace: str, journeys: Sequence[Journey]) -> None:
    """Drop the record (or the position) of journeys that are no longer segment journeys of
    the playbook."""
    current = {marker(workspace, j.id) for j in journeys if swept(j)}
    prefix = marker(workspace, "")
    # LIKE's wildcards and PostgreSQL's escape character match any character here instead;
    # the prefix is checked exactly below.
    pattern = prefix.replace("\\", "_").replace("%", "_") + "%"
    gone = [
        (str(name),)
        for (name,) in conn.execute("SELECT name FROM cursors WHERE name LIKE ?", (pattern,))
        if str(name).startswith(prefix) and name not in current
    ]
    if gone:
        writer.submit(lambda c: c.executemany("DELETE FROM cursors WHERE name = ?", gone)).result()


def stale_segments(
    conn: Conn,
    workspace: str,
    journeys: Sequence[Journey],
    versions: Mapping[str, str] | None = None,
) -> list[Journey]:
    """The segment and `score` entry journeys whose entry has not been swept as it is now
    (`versions`: the scoring models' versions, by id)."""
    stale = []
    for journey in journeys:
        if not swept(journey):
            continue
        rows = conn.execute(
            "SELECT position FROM cursors WHERE name = ?", (marker(workspace, journey.id),)
        )
        if not rows or rows[0][0] != segment_digest(journey, versions):
            stale.append(journey)
    return stale


class Position(msgspec.Struct, frozen=True):
    """Where a journey's sweep stands between two chunks: the segment swept (`digest`), the
    last profile evaluated (`after`, profiles go in id order), how many were, and how many
    timers were set due now and later (for the log line at the end)."""

    digest: str
    after: str = ""
    done: int = 0
    due_now: int = 0
    watched: int = 0


_position_decoder = msgspec.json.Decoder(Position)


def positions(
    conn: Conn,
    workspace: str,
    journeys: Sequence[Journey],
    versions: Mapping[str, str] | None = None,
) -> dict[str, Position]:
    """Where each journey's sweep stands, by journey id: a position recorded for another
    segment (changed since) starts again from the first profile."""
    names = [marker(workspace, j.id) for j in journeys]
    recorded = {
        str(name): str(value)
        for name, value in conn.execute(
            f"SELECT name, position FROM cursors WHERE name IN ({','.join('?' * len(names))})",
            tuple(names),
        )
    }
    found = {}
    for journey in journeys:
        digest = segment_digest(journey, versions)
        raw = recorded.get(marker(workspace, journey.id), "")
        # A digest alone (no JSON) is a sweep done, of another segment for a stale journey.
        at = _position_decoder.decode(raw) if raw.startswith("{") else None
        found[journey.id] = at if at is not None and at.digest == digest else Position(digest)
    return found


class Sweep:
    """The sweep of a workspace's stale segment journeys, one chunk per `step`. The engine
    runs each step as a processor job of its own that asks for the next, so a batch of events
    is processed between two chunks. Each chunk records where every journey's sweep stands
    with its timers, in one transaction: stopped (or killed), the sweep goes on from the next
    profile, not from the first; `done` starts from the count recorded."""

    def __init__(
        self,
        conn: Conn,
        workspace: str,
        journeys: Sequence[Journey],
        versions: Mapping[str, str] | None = None,
    ) -> None:
        self.workspace = workspace
        self.journeys = tuple(journeys)
        self.versions = dict(versions or {})
        self.digests = tuple((j.id, segment_digest(j, self.versions)) for j in journeys)
        (total,) = conn.execute(
            "SELECT COUNT(*) FROM profiles WHERE workspace_id = ? AND merged_into IS NULL",
            (workspace,),
        )[0]
        self.total = int(total)
        self.done = min(
            p.done for p in positions(conn, workspace, journeys, self.versions).values()
        )
        self._ids = [j.id for j in journeys]
        if self.done:
            log.info(
                "resuming the evaluation of the segments of %s after %d of %d profiles of %s",
                self._ids,
                self.done,
                self.total,
                workspace,
            )
        else:
            log.info(
                "evaluating the segments of %s for %d profiles of %s",
                self._ids,
                self.total,
                workspace,
            )
        self._bar = tqdm(
            total=self.total,
            initial=self.done,
            unit="profile",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )

    def covers(
        self, journeys: Sequence[Journey], versions: Mapping[str, str] | None = None
    ) -> bool:
        """Whether this is the sweep of these journeys' segments as they are now."""
        return self.digests == tuple((j.id, segment_digest(j, versions)) for j in journeys)

    @property
    def progress(self) -> tuple[int, int]:
        """(profiles evaluated, profiles in the workspace): profiles created since the count
        may be evaluated too."""
        return self.done, max(self.done, self.total)

    def step(self, conn: Conn, writer: Writer, now: float) -> bool:
        """Evaluate the next chunk of profiles at `now`; True once every profile is done and
        the segments' digests are recorded. The position is read again each time: another
        worker may have gone on with the sweep while this one stood by."""
        at = positions(conn, self.workspace, self.journeys, self.versions)
        rows = conn.execute(
            "SELECT id, state FROM profiles WHERE workspace_id = ? AND merged_into IS NULL "
            "AND id > ? ORDER BY id LIMIT ?",
            (self.workspace, min(p.after for p in at.values()), CHUNK),
        )
        before = self.done
        if rows:
            profiles = [_profile_decoder.decode(state) for _id, state in rows]
            finished = len(rows) < CHUNK
            at = sweep_chunk(
                conn, writer, self.workspace, self.journeys, profiles, now, at, finished
            )
        else:
            finished = True
            names = [(marker(self.workspace, jid), digest) for jid, digest in self.digests]
            writer.submit(lambda c: _record(c, names)).result()
        self.done = min(p.done for p in at.values())
        self._bar.update(self.done - before)
        if finished:
            self.close()
            log.info(
                "evaluated the segments of %s for %d profiles of %s: %d re-evaluated now, "
                "%d watched",
                self._ids,
                self.done,
                self.workspace,
                sum(p.due_now for p in at.values()),
                sum(p.watched for p in at.values()),
            )
        return finished

    def close(self) -> None:
        self._bar.close()


def _record(conn: Conn, rows: Sequence[tuple[str, str]]) -> None:
    conn.executemany(
        "INSERT INTO cursors (name, position) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        rows,
    )


def sweep_chunk(
    conn: Conn,
    writer: Writer,
    workspace: str,
    journeys: Sequence[Journey],
    profiles: list[Profile],
    now: float,
    at: dict[str, Position],
    finished: bool,
) -> dict[str, Position]:
    """Set the timers of one chunk of profiles (in id order), each journey's for those past
    its position `at`, and record the positions reached (the segments' digests once
    `finished`), in one transaction; returns the positions reached."""
    ids = [p.id for p in profiles]
    marks = ",".join("?" * len(ids))
    members: dict[str, dict[str, Membership]] = {
        str(pid): _member_decoder.decode(state)
        for pid, state in conn.execute(
            f"SELECT profile_id, state FROM journey_profiles WHERE workspace_id = ? "
            f"AND profile_id IN ({marks})",
            (workspace, *ids),
        )
    }
    dirty: set[str] = set()
    timers: list[tuple[Any, ...]] = []
    cancelled: list[tuple[str, str]] = []
    reached: dict[str, Position] = {}
    for journey in journeys:
        tests = segments.watched_tests(journey)
        assert tests is not None
        position = at[journey.id]
        # Journeys swept together may stand at different profiles (one added to a sweep
        # under way): each goes on from its own.
        mine = [p for p in profiles if p.id > position.after]
        facts = ChunkFacts(conn, workspace, mine, tests, now)
        payload = _encoder.encode(
            {"name": SEGMENT_EVENT, "properties": {"journey": journey.id}}
        ).decode()
        due_now, watched = 0, 0
        for profile in mine:
            held = members.get(profile.id, {})
            membership = held.get(journey.id, Membership())
            updated, change = segments.sweep_segment(journey, membership, facts.of(profile), now)
            key = segments.timer_key(journey.id, profile.id)
            if isinstance(change, segments.WatchSegment):
                timers.append((workspace, key, profile.id, change.due_at, payload))
                due_now += change.due_at == now
                watched += change.due_at != now
            elif isinstance(change, segments.UnwatchSegment):
                cancelled.append((workspace, key))
            if updated != membership:
                members.setdefault(profile.id, {})[journey.id] = updated
                dirty.add(profile.id)
        reached[journey.id] = msgspec.structs.replace(
            position,
            after=max(position.after, ids[-1]),
            done=position.done + len(mine),
            due_now=position.due_now + due_now,
            watched=position.watched + watched,
        )
    names = [
        (marker(workspace, jid), p.digest if finished else _encoder.encode(p).decode())
        for jid, p in reached.items()
    ]
    rows = [(workspace, pid, _encoder.encode(members[pid]).decode()) for pid in sorted(dirty)]

    def write(c: Conn) -> None:
        # On PostgreSQL an erasure is a plain write, not a processor job: a profile erased
        # since the chunk was read must not get its rows back.
        kept = {
            str(pid)
            for (pid,) in c.execute(
                f"SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IS NULL "
                f"AND id IN ({marks})",
                (workspace, *ids),
            )
        }
        c.executemany(
            "INSERT INTO journey_profiles (workspace_id, profile_id, state) VALUES (?, ?, ?) "
            "ON CONFLICT (workspace_id, profile_id) DO UPDATE SET state = excluded.state",
            [row for row in rows if row[1] in kept],
        )
        c.executemany("DELETE FROM timers WHERE workspace_id = ? AND key = ?", cancelled)
        c.executemany(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, key) DO UPDATE SET "
            "due_at = excluded.due_at, payload = excluded.payload, "
            "profile_id = excluded.profile_id",
            [timer for timer in timers if timer[2] in kept],
        )
        _record(c, names)

    writer.submit(write).result()
    return reached


class ChunkFacts:
    """A segment's facts for one chunk of profiles, read in bulk: scores when the segment
    tests one, and events by name for the profiles its other conditions let through."""

    def __init__(
        self, conn: Conn, workspace: str, profiles: list[Profile], tests: Sequence[Test], at: float
    ) -> None:
        self._conn = conn
        self._ws = workspace
        self.at = at
        self._scores: dict[tuple[str, str], ScoreState] = {}
        models = sorted({t.subject for t in tests if t.kind in ("score", "stage")})
        if models and profiles:
            self._load_scores(profiles, models)
        fixed = [t for t in tests if t.kind != "event"]
        self._candidates = [
            p.id for p in profiles if all(segments.may_hold(t, self.of(p), at) for t in fixed)
        ]
        self._let_through = set(self._candidates)
        # A count of every event of a name (no window, no `where`) is read as a count; rows are
        # read only from the longest window on the name, unless a `where` needs them all.
        self._since: dict[str, float | None] = {}
        for test in tests:
            if test.kind != "event" or (test.within is None and not test.where):
                continue
            earliest = None if test.within is None else at - test.within
            known = self._since.get(test.subject, earliest)
            self._since[test.subject] = (
                None if known is None or earliest is None else min(known, earliest)
            )
        self._events: dict[str, dict[str, list[tuple[float, str]]]] = {}
        self._counts: dict[str, dict[str, int]] = {}

    def of(self, profile: Profile) -> ProfileView:
        return ProfileView(self, profile)

    def _load_scores(self, profiles: list[Profile], models: list[str]) -> None:
        ids = [p.id for p in profiles]
        rows = self._conn.execute(
            f"SELECT profile_id, model, state FROM scores WHERE workspace_id = ? "
            f"AND model IN ({','.join('?' * len(models))}) "
            f"AND profile_id IN ({','.join('?' * len(ids))})",
            (self._ws, *models, *ids),
        )
        for pid, model, state in rows:
            self._scores[(str(pid), str(model))] = _score_decoder.decode(state)

    def score_state(self, pid: str, model: str) -> ScoreState | None:
        return self._scores.get((pid, model))

    def event_count(
        self, pid: str, name: str, since: float | None, where: tuple[Condition, ...]
    ) -> int:
        if since is not None or where:
            return len(self.event_times(pid, name, since, where))
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = self._count_events(name, self._candidates)
        if pid not in self._let_through:  # asked out of order: read alone
            counts = self._count_events(name, [pid])
        return counts.get(pid, 0)

    def _count_events(self, name: str, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = self._conn.execute(
            f"SELECT profile_id, COUNT(*) FROM events WHERE workspace_id = ? AND event = ? "
            f"AND profile_id IN ({','.join('?' * len(ids))}) GROUP BY profile_id",
            (self._ws, name, *ids),
        )
        return {str(pid): int(n) for pid, n in rows}

    def event_times(
        self, pid: str, name: str, since: float | None, where: tuple[Condition, ...]
    ) -> list[float]:
        loaded = self._events.get(name)
        if loaded is None:
            loaded = self._events[name] = self._load_events(name, self._candidates)
        if pid not in self._let_through:  # asked out of order: read alone
            loaded = self._load_events(name, [pid])
        return [
            at
            for at, body in loaded.get(pid, [])
            if (since is None or at >= since) and (not where or body_matches(body, where))
        ]

    def _load_events(self, name: str, ids: list[str]) -> dict[str, list[tuple[float, str]]]:
        found: dict[str, list[tuple[float, str]]] = {pid: [] for pid in ids}
        if not ids:
            return found
        since = self._since.get(name)
        clause, params = ("", ()) if since is None else (" AND received_at >= ?", (since,))
        rows = self._conn.execute(
            f"SELECT profile_id, received_at, body FROM events WHERE workspace_id = ? "
            f"AND event = ? AND profile_id IN ({','.join('?' * len(ids))}){clause}",
            (self._ws, name, *ids, *params),
        )
        for pid, received_at, body in rows:
            found[str(pid)].append((float(received_at), str(body)))
        return found


class ProfileView:
    """The `Facts` of one profile of a chunk: what a segment asks (traits, scores, stages,
    event counts). A segment asks nothing else, and a sweep sends nothing."""

    def __init__(self, chunk: ChunkFacts, profile: Profile) -> None:
        self._chunk = chunk
        self._profile = profile

    @property
    def traits(self) -> dict[str, Any]:
        return self._profile.traits

    def score(self, model: str) -> float | None:
        return self.score_at(model, self._chunk.at)

    def score_at(self, model: str, at: float) -> float | None:
        found = self._chunk.score_state(self._profile.id, model)
        return None if found is None else round(total_at(found, at), 6)

    def event_count(self, name: str, since: float | None, where: tuple[Condition, ...]) -> int:
        return self._chunk.event_count(self._profile.id, name, since, where)

    def event_times(
        self, name: str, since: float | None, where: tuple[Condition, ...]
    ) -> list[float]:
        return self._chunk.event_times(self._profile.id, name, since, where)

    def stage(self, model: str) -> str | None:
        found = self._chunk.score_state(self._profile.id, model)
        return None if found is None else found.stage

    def recipient(self) -> Recipient:
        raise AssertionError("a segment does not ask for a recipient")

    def engagement_times(self) -> list[float]:
        raise AssertionError("a segment does not ask for engagement")

    def channel_history(self) -> dict[str, tuple[int, int]]:
        raise AssertionError("a segment does not ask for a channel history")

    def variant_arms(self, journey: str, step: str, templates: tuple[str, ...]) -> list[Arm]:
        raise AssertionError("a segment does not ask for variants")
