"""What the metrics are computed from, read over a window `[since, until]` (both included).

Each read is one aggregate query over rows the engine keeps anyway (message records and their
history, journey instances, the score ledger, the log's orders): nothing is counted on the hot
path, so processing pays nothing for metrics. The price is paid on request, a scan of the
window's rows; `docs/metrics.md` says what that costs on a large workspace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from leadloop.analytics.metrics import (
    NO_CURRENCY,
    JourneyCounts,
    MessageCounts,
    Revenue,
    StageMove,
    add_order,
    window_spend,
)
from leadloop.analytics.spend import SpendRow
from leadloop.journeys.model import DEFAULT_CONVERSION_WINDOW
from leadloop.scoring.stages import IGNORED
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
ORDER_EVENT = "Order Completed"
# The order event's name is written into the SQL, not bound: only then can the planners prove
# the query matches the partial index `events_orders` (migration 0016), which holds the orders
# alone, so metrics read a window's orders instead of the whole log.
_ORDERS = "workspace_id = ? AND type = 'track' AND event = 'Order Completed'"
REVENUE_SQL = f"SELECT profile_id, body FROM events WHERE {_ORDERS} AND ts >= ? AND ts <= ?"
NEW_CUSTOMERS_SQL = (
    f"SELECT COUNT(*) FROM (SELECT profile_id FROM events WHERE {_ORDERS} "
    "AND profile_id IS NOT NULL GROUP BY profile_id HAVING MIN(ts) >= ? AND MIN(ts) <= ?) firsts"
)
_body = msgspec.json.Decoder(dict[str, Any])

# Per message, whether it ever reached each state (its record keeps only the furthest one: a
# complaint after an open hides the open), then added up per channel, template and journey.
# History ids order its lines: a failure before the first `sent` was an attempt that a re-drive
# sent again (not a loss), and `failed` counts messages whose last attempt failed.
_MESSAGES = """
SELECT channel, template, journey, COUNT(*), SUM(sent),
       SUM(CASE WHEN sent = 1 AND (lost_at IS NULL OR lost_at < first_sent) THEN 1 ELSE 0 END),
       SUM(opened), SUM(clicked), SUM(bounced), SUM(complained),
       SUM(CASE WHEN failed_at > COALESCE(queued_at, 0) THEN 1 ELSE 0 END)
FROM (
    SELECT r.channel AS channel, r.template AS template, r.journey AS journey,
        MAX(CASE WHEN r.sent_at IS NOT NULL
            OR t.status IN ('sent', 'delivered', 'opened', 'clicked') THEN 1 ELSE 0 END) AS sent,
        MIN(CASE WHEN t.status IN ('sent', 'delivered', 'opened', 'clicked') THEN t.id END)
            AS first_sent,
        MAX(CASE WHEN t.status IN ('bounced', 'failed') THEN t.id END) AS lost_at,
        MAX(CASE WHEN t.status = 'failed' THEN t.id END) AS failed_at,
        MAX(CASE WHEN t.status = 'queued' THEN t.id END) AS queued_at,
        MAX(CASE WHEN t.status IN ('opened', 'clicked') THEN 1 ELSE 0 END) AS opened,
        MAX(CASE WHEN t.status = 'clicked' THEN 1 ELSE 0 END) AS clicked,
        MAX(CASE WHEN t.status = 'bounced' THEN 1 ELSE 0 END) AS bounced,
        MAX(CASE WHEN t.status = 'complained' THEN 1 ELSE 0 END) AS complained
    FROM message_records r
    LEFT JOIN message_transitions t
        ON t.workspace_id = r.workspace_id AND t.message_id = r.message_id
    WHERE r.workspace_id = ? AND r.created_at >= ? AND r.created_at <= ?
    GROUP BY r.channel, r.template, r.journey, r.message_id
) per_message
GROUP BY channel, template, journey
"""


# Journey sends the contact policy held back (suppressed, or deferred and not sent yet) never
# reach the sender, so they have no record: only the journeys' `sends` rows, one or more per
# message, the first of which is when the message was made.
_HELD_BACK = """
SELECT channel, template, journey, COUNT(*)
FROM (
    SELECT MAX(COALESCE(s.channel, s.requested_channel)) AS channel, MAX(s.template) AS template,
        MAX(s.journey_id) AS journey, MIN(s.at) AS first_at
    FROM sends s
    WHERE s.workspace_id = ? AND s.at <= ? AND NOT EXISTS (
        SELECT 1 FROM message_records r
        WHERE r.workspace_id = s.workspace_id AND r.message_id = s.message_id)
    GROUP BY s.message_id
) held
WHERE first_at >= ?
GROUP BY channel, template, journey
"""


def message_counts(conn: Conn, workspace: str, since: float, until: float) -> list[MessageCounts]:
    """Messages made in the window, by channel, template and journey: those the sender
    recorded, and those the contact policy held back before they reached it."""
    found: dict[tuple[str, str | None, str | None], MessageCounts] = {}
    for channel, template, journey, *numbers in conn.execute(_MESSAGES, (workspace, since, until)):
        key = (str(channel), template, journey)
        found[key] = MessageCounts(*key, *(int(n or 0) for n in numbers))
    for channel, template, journey, count in conn.execute(_HELD_BACK, (workspace, until, since)):
        key = (str(channel), template, journey)
        known = found.get(key) or MessageCounts(*key, 0, 0, 0, 0, 0, 0, 0, 0)
        found[key] = replace(known, messages=known.messages + int(count))
    return sorted(found.values(), key=lambda c: (c.channel, c.template or "", c.journey or ""))


def journey_counts(
    conn: Conn, workspace: str, since: float, until: float, windows: Mapping[str, float]
) -> list[JourneyCounts]:
    """Entrants of each journey in the window, treated and holdout, and how many of each
    reached the goal within the journey's conversion window (`windows`: journey id → seconds,
    else `DEFAULT_CONVERSION_WINDOW`), measured alike for both groups as `GET /api/v1/journeys`
    does; a conversion after the metrics window still counts for the window's entrants."""
    out: dict[str, JourneyCounts] = {}
    journeys = conn.execute(
        "SELECT DISTINCT journey_id FROM journey_instances WHERE workspace_id = ? "
        "AND entered_at >= ? AND entered_at <= ?",
        (workspace, since, until),
    )
    for (journey,) in journeys:
        window = windows.get(str(journey), DEFAULT_CONVERSION_WINDOW)
        entry = out[str(journey)] = JourneyCounts(str(journey))
        for holdout, converted, count in conn.execute(
            "SELECT holdout, CASE WHEN status = 'converted' AND ended_at - entered_at <= ? "
            "THEN 1 ELSE 0 END, COUNT(*) FROM journey_instances WHERE workspace_id = ? "
            "AND journey_id = ? AND entered_at >= ? AND entered_at <= ? GROUP BY 1, 2",
            (window, workspace, journey, since, until),
        ):
            group = entry.holdout if holdout else entry.treated
            group.entered += int(count)
            if converted:
                group.converted += int(count)
    return [out[key] for key in sorted(out)]


def stage_moves(conn: Conn, workspace: str, since: float, until: float) -> Iterator[StageMove]:
    """(model, stage, person) of every move into a stage in the window, once each. Lines of
    profiles merged since are under the survivor, so a person is one person. A `stage` line
    that notes an unknown stage name moved nobody: it holds the stage the person already had."""
    for model, stage, person in conn.execute(
        "SELECT DISTINCT l.model, l.stage, COALESCE(p.merged_into, l.profile_id) "
        "FROM score_ledger l LEFT JOIN profiles p "
        "ON p.workspace_id = l.workspace_id AND p.id = l.profile_id "
        "WHERE l.workspace_id = ? AND l.kind = 'stage' AND l.at >= ? AND l.at <= ? "
        "AND l.reason NOT LIKE ?",
        (workspace, since, until, f"%{IGNORED}"),
    ):
        yield str(model), str(stage), str(person)


def revenue(conn: Conn, workspace: str, since: float, until: float) -> list[Revenue]:
    """`Order Completed` events timed in the window, per currency."""
    totals: dict[str, Revenue] = {}
    for profile_id, body in conn.execute(REVENUE_SQL, (workspace, since, until)):
        properties = _body.decode(body).get("properties")
        if not isinstance(properties, dict):
            properties = {}
        add_order(totals, profile_id, properties, NO_CURRENCY)
    return [totals[code] for code in sorted(totals)]


def new_customers(conn: Conn, workspace: str, since: float, until: float) -> int:
    """People whose first `Order Completed` ever is timed in the window."""
    rows = conn.execute(NEW_CUSTOMERS_SQL, (workspace, since, until))
    return int(rows[0][0])


def spend(conn: Conn, workspace: str, since: float, until: float, now: float) -> dict[str, float]:
    """Ad spend per currency over the window, days it covers in part in proportion
    (`metrics.window_spend`)."""
    first_day, last_day = _utc_day(since), _utc_day(until)
    rows = conn.execute(
        "SELECT day, currency, SUM(amount) FROM ad_spend WHERE workspace_id = ? AND day >= ? "
        "AND day <= ? GROUP BY day, currency ORDER BY day, currency",
        (workspace, first_day, last_day),
    )
    return window_spend(
        ((str(day), str(code), float(total)) for day, code, total in rows), since, until, now
    )


def _utc_day(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).date().isoformat()


def import_spend(conn: Conn, workspace: str, rows: Iterable[SpendRow], now: float) -> int:
    """Store the rows, replacing whatever an earlier import stored for the same platform
    (`source`) on the same day: a corrected export that renames a campaign or drops one from a
    day must not leave the old line to be counted beside the new one. Other platforms' lines of
    that day stay (each platform is exported apart)."""
    values = [(workspace, r.day, r.source, r.campaign, r.currency, r.amount, now) for r in rows]
    conn.executemany(
        "DELETE FROM ad_spend WHERE workspace_id = ? AND day = ? AND source = ?",
        sorted({(workspace, day, source) for _ws, day, source, *_rest in values}),
    )
    conn.executemany(
        "INSERT INTO ad_spend (workspace_id, day, source, campaign, currency, amount, "
        "imported_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, day, source, "
        "campaign, currency) DO UPDATE SET amount = excluded.amount, "
        "imported_at = excluded.imported_at",
        values,
    )
    return len(values)
