"""A receiver answering 410 Gone asks us to stop sending to that endpoint (Standard Webhooks):
its row is a dead letter at once, later deliveries to the same URL are held as dead letters
without a request, and a re-drive lifts the hold."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leadloop.outbox import service
from leadloop.testing import WebhookReceiver, eventually
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness
from tests.contract.test_scoring_pipeline import seed_lead

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def gone(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Harness, WebhookReceiver]]:
    """An engine whose sales webhook goes to a receiver that answers its first delivery 410."""
    receiver = WebhookReceiver(SECRET, plan=[410])
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_SECRET", SECRET)
    h = make_harness(backend_url, EXAMPLE_PLAYBOOK)
    yield h, receiver
    h.engine.stop()
    receiver.close()


def webhook_rows(h: Harness) -> list[tuple[str, int, str | None]]:
    return h.sql(
        "SELECT status, attempts, last_error FROM outbox WHERE kind = 'webhook' ORDER BY id"
    )


def test_a_gone_endpoint_is_held_until_a_redrive(gone: tuple[Harness, WebhookReceiver]) -> None:
    h, receiver = gone
    seed_lead(h, "vp-1")
    first = eventually(lambda: [r for r in webhook_rows(h) if r[0] == "dead"], timeout=30)
    assert first[0][1] == 1 and "410 Gone" in str(first[0][2])
    # Another lead qualifies: its webhook goes nowhere, and says why.
    seed_lead(h, "vp-2")
    rows = eventually(
        lambda: (r := webhook_rows(h)) and len(r) == 2 and r[1][0] != "pending" and r, timeout=30
    )
    assert rows[1][0] == "dead" and rows[1][1] == 0
    assert "410 Gone" in str(rows[1][2]) and "outbox replay" in str(rows[1][2])
    assert len(receiver.attempts) == 1
    # The operator re-drives: both are sent (the receiver now takes them).
    now = h.engine.clock.now()
    assert (
        h.engine.writer.submit(
            lambda c: service.redrive(c, "default", now, kind="webhook")
        ).result()
        == 2
    )
    h.engine.dispatcher.wake()
    eventually(lambda: len(receiver.deliveries) == 2, timeout=30)
    assert [r[0] for r in webhook_rows(h)] == ["delivered", "delivered"]
