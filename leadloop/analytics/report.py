"""The metrics report of a workspace over a window: the body of `GET /api/v1/metrics`, which
`leadloop metrics --json` prints as it is (one assembly, so a script can read either)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leadloop.analytics import metrics, queries
from leadloop.journeys.config import live_journeys
from leadloop.playbook.model import Playbook

Conn = queries.Conn


def funnel_stages(playbook: Playbook | None) -> dict[str, list[str]]:
    """Each scoring model's stages, in order."""
    models = playbook.models if playbook is not None else ()
    return {m.id: [s.name for s in m.stages] for m in models}


def conversion_windows(playbook: Playbook | None) -> dict[str, float]:
    """Each live journey's conversion window, seconds (`queries.journey_counts`)."""
    return {j.id: j.conversion_window for j in live_journeys(playbook)}


def metrics_report(
    conn: Conn,
    workspace: str,
    since: float,
    until: float,
    now: float,
    stages: Mapping[str, list[str]],
    windows: Mapping[str, float],
) -> dict[str, Any]:
    """Every figure of `docs/metrics.md` over `[since, until]`; `now` tells how much of
    today's imported spend is of the window."""
    messages = queries.message_counts(conn, workspace, since, until)
    revenue = queries.revenue(conn, workspace, since, until)
    return {
        "since": since,
        "until": until,
        "messages": {
            "by_channel": [m.report() for m in metrics.channel_totals(messages)],
            "by_template": [m.report() for m in messages],
        },
        "journeys": [
            j.report() for j in queries.journey_counts(conn, workspace, since, until, windows)
        ],
        "funnel": metrics.funnel(queries.stage_moves(conn, workspace, since, until), stages),
        "revenue": [r.report() for r in revenue],
        "acquisition": metrics.acquisition(
            queries.spend(conn, workspace, since, until, now),
            revenue,
            queries.new_customers(conn, workspace, since, until),
        ),
    }
