"""The conversions stage's own tables, written in the batch transaction.

`conversion_keys` holds each profile's captured match keys (one JSON `MatchKeys` a row);
`conversion_log` holds one row per (destination, event id) the stage considered, queued or
skipped, with its match-key coverage; `conversion_skips` counts the conversions mapped to a
destination that is disabled, per destination and reason. The read side (API, CLI) is `queries`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from leadloop.conversions.capture import MatchKeys
from leadloop.log.batch import Conn

NO_KEYS = MatchKeys()
_keys_decoder = msgspec.json.Decoder(MatchKeys)
_encoder = msgspec.json.Encoder()
_CHUNK = 500
"""Profile ids per `IN (...)` list: well under SQLite's bound-parameter limit."""


@dataclass(frozen=True, slots=True)
class LogRow:
    workspace_id: str
    profile_id: str
    destination: str
    event_id: str
    event_name: str
    mapping: str
    status: str
    """`queued` (an outbox row was written) or `skipped` (with `reason`)."""
    reason: str | None
    has_email: bool
    has_phone: bool
    has_click_id: bool
    has_browser_id: bool
    event_time: float


def load_keys(conn: Conn, workspace: str, profile_ids: list[str]) -> dict[str, MatchKeys]:
    """The stored keys of each profile; `NO_KEYS` for one with none yet."""
    out: dict[str, MatchKeys] = {}
    for start in range(0, len(profile_ids), _CHUNK):
        chunk = profile_ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            "SELECT profile_id, state FROM conversion_keys WHERE workspace_id = ? "
            f"AND profile_id IN ({marks})",
            (workspace, *chunk),
        )
        found = {str(pid): _keys_decoder.decode(state) for pid, state in rows}
        for pid in chunk:
            out[pid] = found.get(pid, NO_KEYS)
    return out


def load_one_keys(conn: Conn, ident: tuple[str, str]) -> MatchKeys:
    """The keys of one (workspace, profile), for a profile `prefetch` did not see."""
    rows = conn.execute(
        "SELECT state FROM conversion_keys WHERE workspace_id = ? AND profile_id = ?", ident
    )
    return _keys_decoder.decode(rows[0][0]) if rows else NO_KEYS


def save_keys(conn: Conn, rows: Iterable[tuple[str, str, MatchKeys]], now: float) -> None:
    """Upsert (workspace, profile, keys) rows."""
    conn.executemany(
        "INSERT INTO conversion_keys (workspace_id, profile_id, state, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, profile_id) "
        "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        [(ws, pid, _encoder.encode(keys).decode(), now) for ws, pid, keys in rows],
        bulk=True,
    )


def append_log(conn: Conn, rows: Iterable[LogRow], now: float) -> None:
    """Insert log rows; a (destination, event id) already logged keeps its first row, so a
    replayed batch changes nothing."""
    conn.executemany(
        "INSERT INTO conversion_log (workspace_id, profile_id, destination, event_id, "
        "event_name, mapping, status, reason, has_email, has_phone, has_click_id, "
        "has_browser_id, event_time, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (workspace_id, destination, event_id) DO NOTHING",
        [
            (
                r.workspace_id,
                r.profile_id,
                r.destination,
                r.event_id,
                r.event_name,
                r.mapping,
                r.status,
                r.reason,
                int(r.has_email),
                int(r.has_phone),
                int(r.has_click_id),
                int(r.has_browser_id),
                r.event_time,
                now,
            )
            for r in rows
        ],
        bulk=True,
    )


def count_skips(conn: Conn, counts: dict[tuple[str, str, str], int], now: float) -> None:
    """Add `counts` per (workspace, destination, reason) to `conversion_skips`. A batch is
    committed once with the processor's cursor, so a count is never added twice."""
    conn.executemany(
        "INSERT INTO conversion_skips (workspace_id, destination, reason, count, first_at, "
        "last_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, destination, reason) "
        "DO UPDATE SET count = conversion_skips.count + excluded.count, "
        "last_at = excluded.last_at",
        [(ws, dest, reason, n, now, now) for (ws, dest, reason), n in sorted(counts.items())],
        bulk=True,
    )


def skip_unsent(
    conn: Conn, profiles: list[tuple[str, str]], kind: str, reason: str, now: float
) -> None:
    """Conversions of these profiles still waiting in the outbox become `skipped`: consent was
    withdrawn, and what was queued while it held must not reach a platform after that. Dead
    letters wait too (`leadloop conversions replay` re-drives them), so they are skipped as
    well. Rows queued under a profile since merged into one of these are found through
    `merged_into`.

    A row already handed to a platform's API when this commits may still arrive there; its
    outcome is then not recorded (the sender records only over `pending`)."""
    conn.executemany(
        "UPDATE outbox SET status = 'skipped', last_error = ?, updated_at = ? "
        "WHERE status IN ('pending', 'dead') AND kind = ? AND workspace_id = ? AND (profile_id = ? "
        "OR EXISTS (SELECT 1 FROM profiles p WHERE p.workspace_id = outbox.workspace_id "
        "AND p.id = outbox.profile_id AND p.merged_into = ?))",
        [(reason, now, kind, ws, pid, pid) for ws, pid in profiles],
    )
