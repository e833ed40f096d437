"""The journeys stage's answers to the questions decisions ask about one profile (the `Facts`
protocol of `journeys.model`): traits, scores and stages, event counts, and the recipient the
contact policy judges a send for. Answers come from the batch first, then the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from leadloop.identity.model import Profile
from leadloop.journeys.model import ScoreReading
from leadloop.journeys.state import BatchState
from leadloop.log.batch import Batch
from leadloop.log.model import Event
from leadloop.personalization.bandit import Arm
from leadloop.policy.model import Recipient
from leadloop.scoring.match import condition_holds
from leadloop.scoring.model import Condition, ScoreState, total_at

_score_decoder = msgspec.json.Decoder(ScoreState)
ENGAGEMENT_EVENTS = ("Email Opened", "Email Link Clicked", "Message Read")
"""A person engaging with a message, for `best_time` waits."""
_SENT = ("queued", "rerouted")
MAX_ENGAGEMENTS = 200
"""The latest engagements a `best_time` wait reads: a habit, not a history."""
_json = msgspec.json.Decoder()


class ProfileFacts:
    """Answers the decisions' questions about one profile, from the batch and the database."""

    def __init__(
        self,
        channels_enabled: Callable[[str], frozenset[str] | None] | None,
        batch: Batch,
        state: BatchState,
        ws: str,
        profile: Profile,
        at: float,
        window: float | None = None,
        event_seq: int | None = None,
    ) -> None:
        self._window = window
        self._event_seq = event_seq
        self._engagement_cache: list[tuple[float, dict[str, Any]]] | None = None
        self._channels_enabled = channels_enabled
        self._batch = batch
        self._state = state
        self._ws = ws
        self._profile = profile
        self._at = at
        self._readings: dict[str, ScoreReading] = {}
        self._event_cache: dict[tuple[str, float | None], list[tuple[Any, ...]]] = {}
        self._stored: dict[str, ScoreState | None] = {}

    @property
    def traits(self) -> dict[str, Any]:
        return self._profile.traits

    def _score_state(self, model: str) -> ScoreState | None:
        cache = self._batch.extra.get("scoring")
        found = getattr(cache, "states", {}).get(self._key(model)) if cache is not None else None
        return found if isinstance(found, ScoreState) else self._stored_state(model)

    def _stored_state(self, model: str) -> ScoreState | None:
        """The model's state as the batch found it (scoring's prefetch, or read once)."""
        key = self._key(model)
        cache = self._batch.extra.get("scoring")
        found = getattr(cache, "loaded", {}).get(key) if cache is not None else None
        if isinstance(found, ScoreState):
            return found
        profile = (self._ws, self._profile.id)
        if profile in getattr(cache, "known", ()) or profile in self._batch.identity.created:
            return None  # prefetched without a row, or new in this batch: none stored
        if model not in self._stored:  # read once: a segment may read it at many instants
            rows = self._batch.identity.conn.execute(
                "SELECT state FROM scores WHERE workspace_id = ? AND profile_id = ? AND model = ?",
                key,
            )
            self._stored[model] = _score_decoder.decode(rows[0][0]) if rows else None
        return self._stored[model]

    def _key(self, model: str) -> tuple[str, str, str]:
        return (self._ws, self._profile.id, model)

    def score(self, model: str) -> float | None:
        return self.score_at(model, self._at)

    def score_at(self, model: str, at: float) -> float | None:
        found = self._score_state(model)
        return None if found is None else round(total_at(found, at), 6)

    def score_reading(self, model: str) -> ScoreReading:
        """The model's score as this event reads it, for `score` entries: the total after it,
        and the one just before it at the same instant (from the state the profile's previous
        event left, in this batch or stored), so a batch boundary changes no decision. Asked
        once per score-trigger journey: every journey on the model gets the same answer (the
        first call moves the batch's remembered state on)."""
        if model in self._readings:
            return self._readings[model]
        key = self._key(model)
        found = self._score_state(model)
        if key in self._state.scores:
            previous = self._state.scores[key]
        else:
            previous = self._stored_state(model)
        self._state.scores[key] = found
        before = 0.0 if previous is None else round(total_at(previous, self._at), 6)
        reading = ScoreReading(before, self.score(model) or 0.0)
        self._readings[model] = reading
        return reading

    def stage(self, model: str) -> str | None:
        found = self._score_state(model)
        return None if found is None else found.stage

    def event_count(self, name: str, since: float | None, where: tuple[Condition, ...]) -> int:
        return len(self.event_times(name, since, where))

    def event_times(
        self, name: str, since: float | None, where: tuple[Condition, ...]
    ) -> list[float]:
        rows = self._event_rows(name, since)
        times = []
        seqs = set()
        for body, seq, received_at in rows:
            seqs.add(int(seq))
            if not where or body_matches(body, where):
                times.append(float(received_at))
        for event in self._state.events.get((self._ws, self._profile.id), []):
            if event.event != name or event.seq in seqs:
                continue
            if since is not None and event.received_at < since:
                continue
            if all(condition_holds(event, c) for c in where):
                times.append(event.received_at)
        return times

    def _event_rows(self, name: str, since: float | None) -> list[tuple[Any, ...]]:
        """The stored events a count reads, once per event decided: a segment's count and the
        instants its events leave the window (`journeys.segments`) are the same rows."""
        key = (name, since)
        if key not in self._event_cache:
            params: list[Any] = [self._ws, self._profile.id, name]
            clause = ""
            if since is not None:
                clause = " AND received_at >= ?"
                params.append(since)
            self._event_cache[key] = self._batch.identity.conn.execute(
                "SELECT body, seq, received_at FROM events WHERE workspace_id = ? "
                "AND profile_id = ? AND event = ?" + clause,
                tuple(params),
            )
        return self._event_cache[key]

    def engagement_times(self) -> list[float]:
        """The profile's latest opens and clicks before the event being decided (a replay sees
        the same ones, whatever came after), without those an image proxy or a scanner made."""
        return [ts for ts, _props in self._engagements()]

    def channel_history(self) -> dict[str, tuple[int, int]]:
        sent: dict[str, int] = {}
        if not self._state.fresh(self._ws, self._profile.id):
            for channel, count in self._batch.identity.conn.execute(
                "SELECT channel, COUNT(*) FROM sends WHERE workspace_id = ? AND profile_id = ? "
                "AND outcome IN ('queued', 'rerouted') GROUP BY channel",
                (self._ws, self._profile.id),
            ):
                sent[str(channel)] = int(count)
        for row in self._state.sends:  # this batch's, not written yet (`writes._send_row`)
            if row[0] == self._ws and row[2] == self._profile.id and row[11] in _SENT:
                sent[str(row[7])] = sent.get(str(row[7]), 0) + 1
        engaged: dict[str, set[str]] = {}
        for _ts, props in self._engagements():
            channel, message = props.get("channel"), props.get("message_id")
            if isinstance(channel, str) and isinstance(message, str):
                engaged.setdefault(channel, set()).add(message)
        return {
            channel: (sent.get(channel, 0), len(engaged.get(channel, ())))
            for channel in sent.keys() | engaged.keys()
        }

    def _engagements(self) -> list[tuple[float, dict[str, Any]]]:
        """(time, properties) of the profile's latest opens, reads and clicks before the event
        being decided, latest first, without those an image proxy or a scanner made."""
        if self._event_seq is None:
            return []
        if self._engagement_cache is not None:
            return self._engagement_cache
        names = ENGAGEMENT_EVENTS
        rows = self._batch.identity.conn.execute(
            "SELECT seq, ts, body FROM events WHERE workspace_id = ? AND profile_id = ? "
            f"AND seq < ? AND event IN ({','.join('?' * len(names))}) "
            "ORDER BY seq DESC LIMIT ?",
            (self._ws, self._profile.id, self._event_seq, *names, MAX_ENGAGEMENTS),
        )
        found = {int(seq): (float(ts), _json.decode(body)) for seq, ts, body in rows}
        for event in self._state.events.get((self._ws, self._profile.id), []):
            if event.event in names and event.seq < self._event_seq:
                found.setdefault(event.seq, (event.timestamp, event.body))
        out = []
        for seq in sorted(found, reverse=True)[:MAX_ENGAGEMENTS]:
            ts, body = found[seq]
            props = body.get("properties") if isinstance(body, dict) else None
            props = props if isinstance(props, dict) else {}
            if props.get("automated") is True:
                continue
            out.append((ts, props))
        self._engagement_cache = out
        return out

    def variant_arms(self, journey: str, step: str, templates: tuple[str, ...]) -> list[Arm]:
        # Counts every profile's sends and clicks change: a batch decided while the previous
        # one is written must be decided again if that one changed them (`log.overlap`).
        self._batch.shared_reads.add(("variant_stats", self._ws, journey, step))
        conn = self._batch.identity.conn
        return self._state.variant_arms(conn, self._ws, journey, step, templates)

    def recipient(self) -> Recipient:
        conn = self._batch.identity.conn
        enabled = self._channels_enabled(self._ws) if self._channels_enabled else None
        since = None if self._window is None else self._at - self._window
        return Recipient(
            traits=self._profile.traits,
            suppressions=tuple(self._state.suppressed(conn, self._ws, self._profile.id)),
            sent=tuple(self._state.sent_records(conn, self._ws, self._profile.id, since)),
            channel_enabled=enabled,
        )


def body_matches(body: str, where: tuple[Condition, ...]) -> bool:
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
