"""Read side of the conversions stage (API, CLI) and the re-drive of dead conversions.

Delivery states are the outbox rows' (`delivered`, `pending`, `dead`, `skipped` at send time);
`conversion_log` adds what never reached the outbox (no consent, too old) and the match-key flags
of what did; `conversion_skips` the counts of conversions mapped to a disabled destination.
"""

from __future__ import annotations

from typing import Any

from leadloop.outbox import service as outbox_service
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
KIND = "conversion"


def _destination(out: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return out.setdefault(
        name,
        {
            "sent": 0,
            "pending": 0,
            "failed": 0,
            "skipped": 0,
            "failed_reasons": [],
            "skipped_reasons": [],
            "coverage": {
                "events": 0,
                "email_hash": 0.0,
                "phone_hash": 0.0,
                "click_id": 0.0,
                "browser_id": 0.0,
            },
        },
    )


def _add_reason(reasons: list[dict[str, Any]], reason: str | None, count: int) -> None:
    text = reason or "unknown"
    for entry in reasons:
        if entry["reason"] == text:
            entry["count"] += count
            return
    reasons.append({"reason": text, "count": count})


def summary(conn: Conn, workspace: str) -> dict[str, Any]:
    """Per destination: sent, pending, failed (dead letters), skipped with reasons, and match-key
    coverage: the share of forwarded events with an email hash, phone hash, click id, browser id
    (the inputs of Meta's event match quality)."""
    out: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        "SELECT destination, status, last_error, COUNT(*) FROM outbox "
        "WHERE workspace_id = ? AND kind = ? GROUP BY destination, status, last_error",
        (workspace, KIND),
    )
    for destination, status, error, count in rows:
        entry = _destination(out, str(destination))
        n = int(count)
        if status == "delivered":
            entry["sent"] += n
        elif status == "pending":
            entry["pending"] += n
        elif status == "dead":
            entry["failed"] += n
            _add_reason(entry["failed_reasons"], error, n)
        elif status == "skipped":
            entry["skipped"] += n
            _add_reason(entry["skipped_reasons"], error, n)
    rows = conn.execute(
        "SELECT destination, reason, COUNT(*) FROM conversion_log "
        "WHERE workspace_id = ? AND status = 'skipped' GROUP BY destination, reason",
        (workspace,),
    )
    for destination, reason, count in rows:
        entry = _destination(out, str(destination))
        entry["skipped"] += int(count)
        _add_reason(entry["skipped_reasons"], reason, int(count))
    rows = conn.execute(
        "SELECT destination, reason, count FROM conversion_skips WHERE workspace_id = ?",
        (workspace,),
    )
    for destination, reason, count in rows:
        entry = _destination(out, str(destination))
        entry["skipped"] += int(count)
        _add_reason(entry["skipped_reasons"], str(reason), int(count))
    rows = conn.execute(
        "SELECT destination, COUNT(*), SUM(has_email), SUM(has_phone), SUM(has_click_id), "
        "SUM(has_browser_id) FROM conversion_log WHERE workspace_id = ? AND status = 'queued' "
        "GROUP BY destination",
        (workspace,),
    )
    for destination, count, email, phone, click, browser in rows:
        total = int(count)
        entry = _destination(out, str(destination))
        entry["coverage"] = {
            "events": total,
            "email_hash": round(int(email or 0) / total, 4) if total else 0.0,
            "phone_hash": round(int(phone or 0) / total, 4) if total else 0.0,
            "click_id": round(int(click or 0) / total, 4) if total else 0.0,
            "browser_id": round(int(browser or 0) / total, 4) if total else 0.0,
        }
    for entry in out.values():
        for key in ("failed_reasons", "skipped_reasons"):
            entry[key].sort(key=lambda r: (-r["count"], r["reason"]))
    return {"destinations": dict(sorted(out.items()))}


def list_conversions(
    conn: Conn,
    workspace: str,
    *,
    status: str | None = None,
    destination: str | None = None,
    after: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    clauses = ["workspace_id = ?", "kind = ?", "id > ?"]
    params: list[Any] = [workspace, KIND, after]
    if status:
        clauses.append("status = ?")
        params.append(status)
    if destination:
        clauses.append("destination = ?")
        params.append(destination)
    rows = conn.execute(
        "SELECT id, destination, idempotency_key, status, attempts, next_attempt_at, last_error, "
        f"profile_id, created_at, updated_at FROM outbox WHERE {' AND '.join(clauses)} "
        "ORDER BY id LIMIT ?",
        (*params, limit),
    )
    keys = (
        "id",
        "destination",
        "idempotency_key",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "profile_id",
        "created_at",
        "updated_at",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


def replay_dead(conn: Conn, workspace: str, now: float, destination: str | None = None) -> int:
    """Dead conversions back to pending with a fresh attempt budget (run in a transaction).
    Their ids are unchanged, so a platform that did take one drops the re-send."""
    return outbox_service.redrive(conn, workspace, now, kind=KIND, destination=destination)
