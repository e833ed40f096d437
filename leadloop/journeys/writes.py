"""The journeys stage's writes: an `Advance` turned into the batch's rows (outbox messages,
webhooks and audience changes, send decisions, timers, emitted events), and the SQL that
flushes a batch's `BatchState` and moves a merged-away profile's rows to its survivor.
"""

from __future__ import annotations

from typing import Any

import msgspec

from leadloop.digest import sha256_hex
from leadloop.identity.service import IdentityBatch
from leadloop.journeys.model import (
    WAKE_EVENT,
    Advance,
    CallWebhook,
    CancelWake,
    ChangeAudience,
    EmitEvent,
    Instance,
    QueueSend,
    RecordPolicy,
    ScheduleWake,
)
from leadloop.journeys.state import LIVE_STATUSES, BatchState, timer_key
from leadloop.log.batch import Batch, Conn, Emit, OutboxRow, Timer
from leadloop.policy.model import HARD_REASONS, SentRecord

_HARD = ", ".join(f"'{reason}'" for reason in sorted(HARD_REASONS))
"""The reasons that stop transactional sends too, as an SQL list (constants, not input)."""

_encoder = msgspec.json.Encoder()
REMOVED_REASON = "journey removed from the playbook"


def live_marker(workspace: str, journey_id: str) -> str:
    """The `cursors` row naming the journey's version the engine last made live: its
    versions' `created_at` is when each was first registered, and a version made live again
    (a `${VAR}` back to an earlier value) keeps the time it was first."""
    return f"journey-live:{workspace}:{journey_id}"


def effect_key(key: str) -> str:
    """A stable outbox idempotency key (e.g. a Standard Webhooks `webhook-id`)."""
    return "msg_" + sha256_hex(key)[:32]


def apply_advance(batch: Batch, state: BatchState, advance: Advance, at: float) -> None:
    """Record a decision in the batch: the instance and its membership in `state`, its path
    lines and send decisions as rows, its effects as outbox rows, emits and timers."""
    instance = advance.instance
    ws, pid, iid = instance.workspace_id, instance.profile_id, instance.id
    # An instance that ends leaves its membership's `active` naming it: `BatchState.member`
    # reads an `active` whose instance is not live as none, so the row need not be rewritten.
    state.put(instance)
    if advance.path:
        # One row per transition: its first line in the columns, the lines that followed in
        # `more_lines` (a wake-up passing a wait, a send and the end is one row, not three).
        first, *more = advance.path
        state.path.append(
            (
                ws,
                iid,
                pid,
                instance.journey_id,
                instance.version,
                first.step,
                first.at,
                first.kind,
                first.detail,
                _encoder.encode([(x.at, x.step, x.kind, x.detail) for x in more]).decode()
                if more
                else None,
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
            if effect.variant:
                payload["variant"] = effect.template
                count_variant(batch, state, ws, instance.journey_id, effect.step, effect.template)
                state.variant_sends.add(
                    (ws, effect.message_id, instance.journey_id, effect.step, effect.template)
                )
            batch.outbox.append(
                OutboxRow(ws, "message", effect.channel, effect.message_id, payload, pid, at)
            )
            outcome = "rerouted" if effect.notes else "queued"
            reason = "; ".join(effect.notes)
            state.sends.append(
                _send_row(instance, effect, at, outcome, reason, None, variant=effect.variant)
            )
            state.sent.setdefault((ws, pid), []).append(
                SentRecord(at, effect.channel, effect.transactional)
            )
        elif isinstance(effect, RecordPolicy):
            state.sends.append(
                _send_row(instance, effect, at, effect.outcome, effect.reason, effect.until)
            )
        elif isinstance(effect, ScheduleWake):
            properties = {
                "instance": iid,
                "token": effect.token,
                "journey": instance.journey_id,
            }
            batch.schedule(Timer(ws, timer_key(iid), pid, effect.due_at, WAKE_EVENT, properties))
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
                OutboxRow(ws, "audience", effect.audience, effect_key(effect.key), payload, pid, at)
            )


def count_variant(
    batch: Batch,
    state: BatchState,
    ws: str,
    journey: str,
    step: str,
    template: str,
    *,
    clicks: int = 0,
) -> None:
    """A message queued (or, with `clicks=1`, first clicked) for a variant of a send step."""
    conn = batch.identity.conn
    state.count_variant(conn, ws, journey, step, template, 0 if clicks else 1, clicks)
    batch.shared_writes.add(("variant_stats", ws, journey, step))


def flush_batch(batch: Batch, conn: Conn) -> None:
    """Write what the batch's `BatchState` holds, in the processor's transaction: bulk
    migrations and removals first, then instances, memberships, path, sends, suppressions."""
    state = batch.extra.get("journeys")
    if not isinstance(state, BatchState):
        return
    conn.executemany(
        "INSERT INTO journey_versions (workspace_id, journey_id, version, definition, "
        "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, journey_id, version) "
        "DO NOTHING",
        state.versions,
        bulk=True,
    )
    if state.versions:
        conn.executemany(
            "INSERT INTO cursors (name, position) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            [(live_marker(ws, jid), version) for ws, jid, version, *_rest in state.versions],
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
            where = f"workspace_id = ? AND status IN {LIVE_STATUSES}"
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
        bulk=True,
    )
    conn.executemany(
        "INSERT INTO journey_profiles (workspace_id, profile_id, state) VALUES (?, ?, ?) "
        "ON CONFLICT (workspace_id, profile_id) DO UPDATE SET state = excluded.state",
        [
            (ws, pid, _encoder.encode(state.members[(ws, pid)]).decode())
            for ws, pid in state.dirty_members
        ],
        bulk=True,
    )
    conn.executemany(
        "INSERT INTO journey_path (workspace_id, instance_id, profile_id, journey_id, version, "
        "step, at, kind, detail, more_lines) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        state.path,
        bulk=True,
    )
    conn.executemany(
        "INSERT INTO variant_stats (workspace_id, journey_id, step_id, template, sends, clicks) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, journey_id, step_id, template) "
        "DO UPDATE SET sends = variant_stats.sends + excluded.sends, "
        "clicks = variant_stats.clicks + excluded.clicks",
        [(*key, sends, clicks) for key, (sends, clicks) in state.variant_delta.items()],
    )
    conn.executemany(
        "INSERT INTO sends (workspace_id, message_id, profile_id, instance_id, journey_id, "
        "step, requested_channel, channel, template, transactional, at, outcome, reason, "
        "until, variant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        state.sends,
        bulk=True,
    )
    # One row per profile and channel: a later unsubscribe must not replace a bounce or a
    # complaint (`HARD_REASONS`), which unlike it stops transactional sends too.
    conn.executemany(
        "INSERT INTO suppressions (workspace_id, profile_id, channel, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, profile_id, channel) DO UPDATE SET "
        "reason = excluded.reason, created_at = excluded.created_at "
        f"WHERE suppressions.reason NOT IN ({_HARD}) OR excluded.reason IN ({_HARD})",
        state.new_suppressions,
        bulk=True,
    )
    conn.executemany(
        "UPDATE timers SET profile_id = ? WHERE workspace_id = ? AND key = ?",
        state.moved_timers,
        bulk=True,
    )
    flush_merges(conn, batch.identity, state.absorbed)


def flush_merges(conn: Conn, identity: IdentityBatch, absorbed: set[tuple[str, str]]) -> None:
    """A merged-away profile's journey rows follow its survivor (instances, path, send records,
    suppressions; its memberships too once `absorb` folded them into the survivor's)."""
    for ws, loser in identity.merged:
        final = identity.final(ws, loser)
        for table in ("journey_instances", "journey_path", "sends"):
            conn.execute(
                f"UPDATE {table} SET profile_id = ? WHERE workspace_id = ? AND profile_id = ?",
                (final, ws, loser),
            )
        conn.execute(
            "INSERT INTO suppressions (workspace_id, profile_id, channel, reason, created_at) "
            "SELECT workspace_id, ?, channel, reason, created_at FROM suppressions "
            "WHERE workspace_id = ? AND profile_id = ? ON CONFLICT (workspace_id, profile_id, "
            "channel) DO UPDATE SET reason = excluded.reason, created_at = excluded.created_at "
            f"WHERE suppressions.reason NOT IN ({_HARD}) AND excluded.reason IN ({_HARD})",
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


def _send_row(
    instance: Instance,
    effect: QueueSend | RecordPolicy,
    at: float,
    outcome: str,
    reason: str,
    until: float | None,
    *,
    variant: bool = False,
) -> tuple[Any, ...]:
    """One `sends` row: every decision of the policy, queued, rerouted, deferred or suppressed;
    `variant`: a queued message counted in `variant_stats`."""
    return (
        instance.workspace_id,
        effect.message_id,
        instance.profile_id,
        instance.id,
        instance.journey_id,
        effect.step,
        effect.requested,
        effect.channel,
        effect.template,
        int(effect.transactional),
        at,
        outcome,
        reason,
        until,
        int(variant),
    )
