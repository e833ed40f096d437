"""What one processed batch writes, collected in memory and flushed in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from leadloop.identity.model import Profile
from leadloop.identity.service import IdentityBatch
from leadloop.log.model import Event
from leadloop.outbox import service as outbox_service
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_encoder = msgspec.json.Encoder()


class Emit(msgspec.Struct, frozen=True):
    """An internal event to append to the log (e.g. `Lead Qualified`, a timer firing)."""

    workspace_id: str
    message_id: str
    name: str
    profile_id: str
    timestamp: float
    properties: dict[str, Any]


class Timer(msgspec.Struct, frozen=True):
    workspace_id: str
    key: str
    """Unique per workspace: scheduling the same key again moves the timer."""
    profile_id: str
    due_at: float
    name: str
    properties: dict[str, Any]


class OutboxRow(msgspec.Struct, frozen=True):
    workspace_id: str
    kind: str
    destination: str
    idempotency_key: str
    payload: dict[str, Any]
    profile_id: str | None
    not_before: float


@dataclass(frozen=True)
class Processed:
    """What the processor had processed when a batch's events were read: the log up to
    `through` (its position, pipelined the batch before included: `log.overlap` has the batch
    decided again if that one touched what it reads), but for `excluded`, the batch's own
    events (a re-driven one lies behind the position)."""

    through: str
    excluded: frozenset[int] = frozenset()


@dataclass
class Batch:
    identity: IdentityBatch
    now: float
    emits: list[Emit] = field(default_factory=list)
    timers: dict[tuple[str, str], Timer] = field(default_factory=dict)
    cancelled_timers: set[tuple[str, str]] = field(default_factory=set)
    outbox: list[OutboxRow] = field(default_factory=list)
    fired: list[tuple[str, str, float]] = field(default_factory=list)
    """(workspace, key, due_at) of timers whose firing this batch processed: a replay of the
    log meets timer events whose rows were scheduled again; they are settled here."""
    extra: dict[str, object] = field(default_factory=dict)
    """Per-stage scratch space for the batch (e.g. the scoring stage's state cache)."""
    erasure_epoch: int = 0
    """The erasure epoch (migration 0008) as the batch's events were read, before it read
    anything else: if an erasure commits before the batch is written, the batch is decided
    again (`processor.ErasedMeanwhile`)."""
    barrier: bool = False
    """Set by a stage that writes rows beyond the batch's own profiles (a journey migration
    moves every instance of a journey): the next batch is then decided only after this one is
    committed (`log.overlap`)."""
    shared_reads: set[tuple[str, ...]] = field(default_factory=set)
    """Keys of rows no one profile owns that the batch's decisions read (a send step's counts
    per variant); with `shared_writes`, what `log.overlap` checks beyond profiles."""
    shared_writes: set[tuple[str, ...]] = field(default_factory=set)
    """Keys of such rows the batch changes."""
    processed: Processed | None = None
    """Set by the processor; None (a batch made by hand) reads the whole log as processed."""

    def schedule(self, timer: Timer) -> None:
        self.cancelled_timers.discard((timer.workspace_id, timer.key))
        self.timers[(timer.workspace_id, timer.key)] = timer

    def settle_fired(self, workspace_id: str, key: str, due_at: float) -> None:
        """A timer event is being processed: that timer has fired, whether its row was
        scheduled before this batch or earlier in it (a replay of the log meets both)."""
        pending = self.timers.get((workspace_id, key))
        if pending is not None and pending.due_at == due_at:
            del self.timers[(workspace_id, key)]
        self.fired.append((workspace_id, key, due_at))

    def cancel(self, workspace_id: str, key: str) -> None:
        self.timers.pop((workspace_id, key), None)
        self.cancelled_timers.add((workspace_id, key))

    def flush(self, conn: Conn) -> None:
        conn.executemany(
            "INSERT INTO events (workspace_id, message_id, type, event, ts, received_at, body, "
            "profile_id) VALUES (?, ?, 'internal', ?, ?, ?, ?, ?) "
            "ON CONFLICT (workspace_id, message_id) DO NOTHING",
            [
                (
                    e.workspace_id,
                    e.message_id,
                    e.name,
                    e.timestamp,
                    self.now,
                    _encoder.encode(
                        {
                            "type": "internal",
                            "event": e.name,
                            "profileId": e.profile_id,
                            "properties": e.properties,
                        }
                    ).decode(),
                    e.profile_id,
                )
                for e in self.emits
            ],
            bulk=True,
        )
        # A fired timer's row is normally gone already (firing deletes it); this settles the
        # rows a replay scheduled again. A key this batch schedules anew or cancels is left to
        # the upsert or the delete below, which replace any such row anyway: decay reschedules
        # every key it fires, and that was one wasted indexed delete per profile.
        conn.executemany(
            "DELETE FROM timers WHERE workspace_id = ? AND key = ? AND due_at = ?",
            [
                fired
                for fired in self.fired
                if (fired[0], fired[1]) not in self.timers
                and (fired[0], fired[1]) not in self.cancelled_timers
            ],
            bulk=True,
        )
        conn.executemany(
            "DELETE FROM timers WHERE workspace_id = ? AND key = ?",
            list(self.cancelled_timers),
            bulk=True,
        )
        conn.executemany(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, key) DO UPDATE SET "
            "due_at = excluded.due_at, payload = excluded.payload, profile_id = excluded.profile_id",
            [
                (
                    t.workspace_id,
                    t.key,
                    t.profile_id,
                    t.due_at,
                    _encoder.encode({"name": t.name, "properties": t.properties}).decode(),
                )
                for t in self.timers.values()
            ],
            bulk=True,
        )
        outbox_service.enqueue(conn, self.outbox, self.now)


class Stage(Protocol):
    """A pipeline stage after identity: sees each event with its resolved profile.

    Optional: `prefetch(batch, events)` loads state in bulk before the first `handle`, and
    `discard(batch)` undoes what the stage keeps beyond one batch when the processor throws a
    decided batch away to decide it again (`log.overlap`)."""

    name: str

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile: ...

    def flush(self, batch: Batch, conn: Conn) -> None: ...
