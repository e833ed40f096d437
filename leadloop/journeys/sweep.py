"""A segment journey applied to a running workspace, or a new version that changes its segment:
its segment is evaluated once for every profile, so the people already in it, or whom time
alone will bring in, are reached without an event of their own (a silent person sends none).

The sweep decides no entry itself. Per profile it sets the journey's segment timer
(`journeys.segments.sweep_segment`): due now where the profile's place in the segment differs
from what its membership says, at the next instant time alone changes it, or not at all. The
firing is an event of the log that the processor decides as any other, so an entry follows the
journey's re-entry rule and a replay of the log decides it again.

Runs as a processor job (between two batches), in chunks of `CHUNK` profiles, each written in
one transaction. The segment's digest is recorded once every profile is done
(`cursors`, `segment-sweep:<workspace>:<journey>`): a journey whose recorded digest is its
segment's is not swept again, and a sweep cut short is run again at the next start. Running it
again is harmless: one timer per profile and journey, and a profile already seen in the segment
is not entered again.

Cost: every profile's traits are read once (one indexed range of `profiles` per chunk); scores
only when the segment tests one; events only for the profiles its trait, score and stage
conditions let through, by name: a count for a condition without window or `where` (`{event:
Visited}`), the rows within the longest window for the others (all of them only when a
`where` has no window). Writes: one timer and one membership row per profile the segment
concerns, and a firing (an event) per profile re-evaluated now.

A journey no longer a segment journey of the playbook loses its record: while it is not, no
timer watches its segment, so adding it back sweeps again.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from tqdm import tqdm

from leadloop.identity.model import Profile
from leadloop.journeys import segments
from leadloop.journeys.facts import body_matches
from leadloop.journeys.model import SEGMENT_EVENT, Journey, Membership, SegmentTrigger, Test
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
Progress = Callable[[int, int], None]
"""Called with (profiles evaluated so far, profiles in the workspace): once with 0 before the
first chunk, then after each chunk is written."""


def segment_digest(journey: Journey) -> str:
    """What the sweep is done for: the parsed segment (its conditions and windows), not the
    journey's version, which its steps and re-entry rule change too."""
    return hashlib.sha256(_encoder.encode(journey.trigger)).hexdigest()


def marker(workspace: str, journey_id: str) -> str:
    return f"segment-sweep:{workspace}:{journey_id}"


def forget_removed(conn: Conn, writer: Writer, workspace: str, journeys: Sequence[Journey]) -> None:
    """Drop the record of journeys that are no longer segment journeys of the playbook."""
    current = {marker(workspace, j.id) for j in journeys if isinstance(j.trigger, SegmentTrigger)}
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


def stale_segments(conn: Conn, workspace: str, journeys: Sequence[Journey]) -> list[Journey]:
    """The segment journeys whose segment has not been swept as it is now."""
    stale = []
    for journey in journeys:
        if not isinstance(journey.trigger, SegmentTrigger):
            continue
        rows = conn.execute(
            "SELECT position FROM cursors WHERE name = ?", (marker(workspace, journey.id),)
        )
        if not rows or rows[0][0] != segment_digest(journey):
            stale.append(journey)
    return stale


def sweep_workspace(
    conn: Conn,
    writer: Writer,
    workspace: str,
    journeys: Sequence[Journey],
    now: float,
    progress: Progress | None = None,
) -> int:
    """Evaluate the journeys' segments for every profile of the workspace at `now` and set
    their timers; returns the profiles evaluated. At most `CHUNK` profiles are held at once."""
    (total,) = conn.execute(
        "SELECT COUNT(*) FROM profiles WHERE workspace_id = ? AND merged_into IS NULL",
        (workspace,),
    )[0]
    ids = [j.id for j in journeys]
    log.info("evaluating the segments of %s for %d profiles of %s", ids, total, workspace)
    bar = tqdm(total=total, unit="profile", file=sys.stderr, disable=not sys.stderr.isatty())
    done, due_now, watched, last = 0, 0, 0, ""
    try:
        if progress is not None:
            progress(0, total)
        while True:
            rows = conn.execute(
                "SELECT id, state FROM profiles WHERE workspace_id = ? AND merged_into IS NULL "
                "AND id > ? ORDER BY id LIMIT ?",
                (workspace, last, CHUNK),
            )
            if not rows:
                break
            last = str(rows[-1][0])
            profiles = [_profile_decoder.decode(state) for _id, state in rows]
            counts = sweep_chunk(conn, writer, workspace, journeys, profiles, now)
            due_now, watched = due_now + counts[0], watched + counts[1]
            done += len(profiles)
            bar.update(len(profiles))
            if progress is not None:
                progress(done, int(total))
    finally:
        bar.close()
    names = [(marker(workspace, j.id), segment_digest(j)) for j in journeys]
    writer.submit(
        lambda c: c.executemany(
            "INSERT INTO cursors (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            names,
        )
    ).result()
    log.info(
        "evaluated the segments of %s for %d profiles of %s: %d re-evaluated now, %d watched",
        ids,
        done,
        workspace,
        due_now,
        watched,
    )
    return done


def sweep_chunk(
    conn: Conn,
    writer: Writer,
    workspace: str,
    journeys: Sequence[Journey],
    profiles: list[Profile],
    now: float,
) -> tuple[int, int]:
    """Set the timers of one chunk of profiles, in one transaction; returns (timers due now,
    timers due later)."""
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
    due_now = 0
    for journey in journeys:
        assert isinstance(journey.trigger, SegmentTrigger)
        facts = ChunkFacts(conn, workspace, profiles, journey.trigger.tests, now)
        payload = _encoder.encode(
            {"name": SEGMENT_EVENT, "properties": {"journey": journey.id}}
        ).decode()
        for profile in profiles:
            held = members.get(profile.id, {})
            membership = held.get(journey.id, Membership())
            updated, change = segments.sweep_segment(journey, membership, facts.of(profile), now)
            key = segments.timer_key(journey.id, profile.id)
            if isinstance(change, segments.WatchSegment):
                timers.append((workspace, key, profile.id, change.due_at, payload))
                due_now += change.due_at == now
            elif isinstance(change, segments.UnwatchSegment):
                cancelled.append((workspace, key))
            if updated != membership:
                members.setdefault(profile.id, {})[journey.id] = updated
                dirty.add(profile.id)
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

    writer.submit(write).result()
    return due_now, len(timers) - due_now


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
