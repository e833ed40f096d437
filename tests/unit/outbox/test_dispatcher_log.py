"""The dispatcher's log: batch deliveries are counted, everything else is one line per row."""

from __future__ import annotations

import logging

import pytest

from leadloop.outbox.dispatcher import _log_outcomes
from leadloop.outbox.service import Claimed, Outcome


def row(n: int, kind: str, destination: str) -> Claimed:
    return Claimed(n, "default", kind, destination, f"{destination}:{n}", b"{}", 0, None, 0.0)


def test_batched_deliveries_are_one_line_per_destination_and_failures_one_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered = Outcome("delivered")
    outcomes = [
        *((row(n, "conversion", "meta"), delivered) for n in range(3)),
        (row(3, "conversion", "meta"), Outcome("pending", 60.0, "HTTP 500")),
        (row(4, "conversion", "tiktok"), delivered),
        (row(5, "webhook", "sales"), delivered),
    ]
    with caplog.at_level(logging.INFO, logger="leadloop.outbox"):
        _log_outcomes(outcomes, batched={0, 1, 2, 3, 4})
    lines = [r.getMessage() for r in caplog.records]
    assert sorted(lines) == sorted(
        [
            "outbox conversion meta #3 → pending (HTTP 500)",
            "outbox webhook sales #5 → delivered",
            "outbox conversion meta: 3 delivered in one batch",
            "outbox conversion tiktok: 1 delivered in one batch",
        ]
    )
