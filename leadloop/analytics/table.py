"""The metrics report (`report.metrics_report`) as text tables for a terminal: each figure with
its unit, and a figure that cannot be told as `unknown` with the reason, never as a 0 or a dash
a reader could take for one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

Row = Mapping[str, Any]
Column = tuple[str, Callable[[Row], str]]
NOT_APPLICABLE = "–"
"""A figure with no meaning here (the first stage has no previous one), not an unknown one."""


def render_report(body: Mapping[str, Any], workspace: str) -> str:
    messages = body["messages"]
    stages = [
        {"model": m["model"], "first": i == 0, **stage}
        for m in body["funnel"]
        for i, stage in enumerate(m["stages"])
    ]
    sections = [
        f"Metrics of workspace {_text(workspace)} from {_moment(body['since'])} to "
        f"{_moment(body['until'])} UTC, both included",
        _section(
            "Messages by channel",
            [("channel", _field("channel")), *_MESSAGES],
            messages["by_channel"],
        ),
        _section(
            "Messages by template and journey",
            [
                ("channel", _field("channel")),
                ("template", _field("template")),
                ("journey", _field("journey")),
                *_MESSAGES,
            ],
            messages["by_template"],
        ),
        _section(
            "Journeys: conversion within each journey's window, and lift over the holdout",
            _JOURNEYS,
            body["journeys"],
        ),
        _section("Funnel: people who reached each stage or a later one", _FUNNEL, stages),
        _section("Revenue (Order Completed)", _REVENUE, body["revenue"]),
        _section(
            "Acquisition: CAC and ROAS against imported ad spend (blended, not attributed)",
            _ACQUISITION,
            body["acquisition"],
        ),
    ]
    return "\n\n".join(sections)


def _section(title: str, columns: Sequence[Column], rows: Sequence[Row]) -> str:
    if not rows:
        return f"{title}\n  nothing in this window"
    cells = [[name for name, _ in columns], *([value(row) for _, value in columns] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    return "\n".join([title, *(f"  {line}" for line in lines)])


def _text(value: Any) -> str:
    """Names from playbooks and events, with any control character escaped: printed as it
    is, an escape sequence in a template name would drive the reader's terminal."""
    text = "(none)" if value is None else str(value)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _field(name: str) -> Callable[[Row], str]:
    return lambda row: _text(row[name])


def _moment(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _count(name: str) -> Callable[[Row], str]:
    return lambda row: f"{row[name]:,}"


def _rate(name: str, why: str) -> Callable[[Row], str]:
    """A share as a percentage; `why`: what makes it unknown (a rate over nobody)."""
    return lambda row: _percent(row[name], why)


def _percent(value: float | None, why: str) -> str:
    return f"unknown ({why})" if value is None else f"{100 * value:.1f} %"


def _money(name: str, why: str) -> Callable[[Row], str]:
    return lambda row: (
        f"unknown ({why})" if row[name] is None else f"{row[name]:,.2f} {_text(row['currency'])}"
    )


_MESSAGES: list[Column] = [
    ("messages", _count("messages")),
    ("sent", _count("sent")),
    ("delivered", _count("delivered")),
    ("opened", _count("opened")),
    ("clicked", _count("clicked")),
    ("bounced", _count("bounced")),
    ("complaints", _count("complained")),
    ("failed", _count("failed")),
    ("delivery rate", _rate("delivery_rate", "nothing sent")),
    ("open rate", _rate("open_rate", "nothing delivered")),
    ("CTR", _rate("click_rate", "nothing delivered")),
    ("click-to-open", _rate("click_to_open", "nothing opened")),
    ("bounce rate", _rate("bounce_rate", "nothing sent")),
]


def _group(group: str, name: str) -> Callable[[Row], str]:
    return lambda row: f"{row[group][name]:,}"


def _lift(row: Row) -> str:
    if row["lift"] is not None:
        return f"{100 * row['lift']:+.1f} pts"
    return (
        "unknown (no holdout entrants)"
        if not row["holdout"]["entered"]
        else "unknown (no treated entrants)"
    )


_JOURNEYS: list[Column] = [
    ("journey", _field("id")),
    ("entered", _group("treated", "entered")),
    ("converted", _group("treated", "converted")),
    ("CR", lambda row: _percent(row["treated"]["conversion_rate"], "no entrants")),
    ("holdout entered", _group("holdout", "entered")),
    ("holdout converted", _group("holdout", "converted")),
    ("holdout CR", lambda row: _percent(row["holdout"]["conversion_rate"], "no entrants")),
    ("lift", _lift),
]


def _from_previous(row: Row) -> str:
    if row["first"]:
        return NOT_APPLICABLE
    return _percent(row["from_previous"], "nobody reached the previous stage")


_FUNNEL: list[Column] = [
    ("model", _field("model")),
    ("stage", _field("stage")),
    ("reached", _count("reached")),
    ("from previous", _from_previous),
]


_REVENUE: list[Column] = [
    ("currency", _field("currency")),
    ("orders", _count("orders")),
    ("revenue", _money("revenue", "")),
    ("customers", _count("customers")),
    ("revenue per customer", _money("revenue_per_customer", "no order names a person")),
    (
        "orders per customer",
        lambda row: (
            "unknown (no order names a person)"
            if row["orders_per_customer"] is None
            else f"{row['orders_per_customer']:.2f}"
        ),
    ),
]


def _roas(row: Row) -> str:
    if row["roas"] is None:
        return f"unknown ({_text(row['roas_unknown'] or 'not reported')})"
    return f"{row['roas']:.2f}×"


_ACQUISITION: list[Column] = [
    ("currency", _field("currency")),
    ("ad spend", _money("spend", "")),
    ("new customers", _count("new_customers")),
    ("revenue", _money("revenue", "")),
    ("CAC", _money("cac", "no new customers")),
    ("ROAS", _roas),
]
