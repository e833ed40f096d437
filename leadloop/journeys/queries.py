"""Read side of journeys for the admin API and `leadloop simulate`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from leadloop.journeys.model import DEFAULT_CONVERSION_WINDOW, Membership
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_lines = msgspec.json.Decoder(list[tuple[float, str | None, str, str]])
_members = msgspec.json.Decoder(dict[str, Membership])


def journeys_overview(
    conn: Conn, workspace: str, live: dict[str, str], windows: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """Every journey with stored versions: its versions (which one is live), instance counts per
    version, step and status, the holdout's size and conversions beside the treated group's
    (for lift), and how many profiles triggered it without entering because its goal already
    held. `live` maps journey id → live version; `windows` journey id → conversion window (a
    conversion later than that after entry counts in neither group; default
    `DEFAULT_CONVERSION_WINDOW`)."""
    out: dict[str, dict[str, Any]] = {}
    for jid, version, created in conn.execute(
        "SELECT journey_id, version, created_at FROM journey_versions WHERE workspace_id = ? "
        "ORDER BY journey_id, created_at",
        (workspace,),
    ):
        entry = out.setdefault(
            jid,
            {
                "id": jid,
                "live_version": live.get(jid),
                "removed": jid not in live,
                "versions": [],
                "steps": [],
                "holdout": {"entered": 0, "converted": 0},
                "treated": {"entered": 0, "converted": 0},
                "not_entered": {"profiles": 0, "times": 0},
            },
        )
        entry["versions"].append(
            {"version": version, "created_at": created, "live": live.get(jid) == version}
        )
    for jid, version, step, status, count in conn.execute(
        "SELECT journey_id, version, step, status, COUNT(*) FROM journey_instances "
        "WHERE workspace_id = ? GROUP BY journey_id, version, step, status",
        (workspace,),
    ):
        if jid in out:
            out[jid]["steps"].append(
                {"version": version, "step": step, "status": status, "count": int(count)}
            )
    for jid, entry in out.items():
        window = (windows or {}).get(jid, DEFAULT_CONVERSION_WINDOW)
        for holdout, converted, count in conn.execute(
            "SELECT holdout, CASE WHEN status = 'converted' AND ended_at - entered_at <= ? "
            "THEN 1 ELSE 0 END, COUNT(*) FROM journey_instances WHERE workspace_id = ? "
            "AND journey_id = ? GROUP BY 1, 2",
            (window, workspace, jid),
        ):
            group = entry["holdout" if holdout else "treated"]
            group["entered"] += int(count)
            if converted:
                group["converted"] += int(count)
    # Triggers that fired while the goal already held live in each profile's memberships; only
    # the rows that hold such a count are decoded (the LIKE is a prefilter, the decode decides).
    for (state,) in conn.execute(
        "SELECT state FROM journey_profiles WHERE workspace_id = ? AND state LIKE ?",
        (workspace, '%"skipped":%'),
    ):
        for jid, member in _members.decode(state).items():
            if member.skipped and jid in out:
                out[jid]["not_entered"]["profiles"] += 1
                out[jid]["not_entered"]["times"] += member.skipped
    for entry in out.values():
        rates = [
            g["converted"] / g["entered"] if g["entered"] else None
            for g in (entry["treated"], entry["holdout"])
        ]
        entry["lift"] = None if None in rates else rates[0] - rates[1]  # type: ignore[operator]
        # Sorted here, not in SQL: the backends place a NULL step (an ended instance) and
        # punctuation in step ids differently, and the API's order should not depend on them.
        entry["steps"].sort(
            key=lambda s: (s["version"], s["step"] is not None, s["step"] or "", s["status"])
        )
    return list(out.values())


def profile_journeys(
    conn: Conn, workspace: str, profile_id: str, path_limit: int = 200
) -> list[dict[str, Any]]:
    """Each instance of the profile: where it is, why (its latest path line), and its path."""
    rows = conn.execute(
        "SELECT id, journey_id, version, step, status, holdout, entered_at, updated_at, ended_at, "
        "reason FROM journey_instances WHERE workspace_id = ? AND profile_id = ? "
        "ORDER BY entered_at, id",
        (workspace, profile_id),
    )
    out = []
    for iid, jid, version, step, status, holdout, entered, updated, ended, reason in rows:
        path_rows = conn.execute(
            "SELECT at, step, kind, detail, more_lines FROM journey_path WHERE workspace_id = ? "
            "AND instance_id = ? ORDER BY id LIMIT ?",
            (workspace, iid, path_limit),
        )
        path = [
            {"at": at, "step": s, "kind": kind, "detail": detail}
            for at, s, kind, detail in path_lines(path_rows)[:path_limit]
        ]
        due = conn.execute(
            "SELECT due_at FROM timers WHERE workspace_id = ? AND key = ?",
            (workspace, f"journey:{iid}"),
        )
        out.append(
            {
                "instance": iid,
                "journey": jid,
                "version": version,
                "step": step,
                "status": status,
                "holdout": bool(holdout),
                "entered_at": entered,
                "updated_at": updated,
                "ended_at": ended,
                "reason": reason or (path[-1]["detail"] if path else ""),
                "wakes_at": float(due[0][0]) if due else None,
                "path": path,
            }
        )
    return out


def not_entered(conn: Conn, workspace: str, profile_id: str) -> list[dict[str, Any]]:
    """The journeys whose trigger fired for the profile without entering it, because their
    goal already held: how many times, the latest time and why."""
    rows = conn.execute(
        "SELECT state FROM journey_profiles WHERE workspace_id = ? AND profile_id = ?",
        (workspace, profile_id),
    )
    members = _members.decode(rows[0][0]) if rows else {}
    return [
        {"journey": jid, "times": m.skipped, "at": m.skipped_at, "reason": m.skip_reason}
        for jid, m in sorted(members.items())
        if m.skipped
    ]


def path_lines(rows: Iterable[Sequence[Any]]) -> list[tuple[float, str | None, str, str]]:
    """`journey_path` rows (at, step, kind, detail, more_lines), in order, as the path's lines:
    each row is one transition, its first line in the columns and the rest in `more_lines`."""
    lines: list[tuple[float, str | None, str, str]] = []
    for at, step, kind, detail, more in rows:
        lines.append((float(at), step, kind, detail))
        if more:
            lines.extend((float(a), s, k, d) for a, s, k, d in _lines.decode(more))
    return lines


def sends(conn: Conn, workspace: str, profile_id: str) -> list[dict[str, Any]]:
    keys = (
        "message_id",
        "journey",
        "step",
        "requested_channel",
        "channel",
        "template",
        "at",
        "outcome",
        "reason",
        "until",
    )
    rows = conn.execute(
        "SELECT message_id, journey_id, step, requested_channel, channel, template, at, outcome, "
        "reason, until FROM sends WHERE workspace_id = ? AND profile_id = ? ORDER BY id",
        (workspace, profile_id),
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]
