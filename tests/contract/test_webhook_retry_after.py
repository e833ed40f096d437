"""A receiver's `Retry-After` reaches the outbox through the real webhook sender: the next
attempt is no earlier than the receiver asked, on the engine's (manual) clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.utils import formatdate

import pytest

from leadloop.clock import SystemClock
from leadloop.testing import WebhookReceiver, eventually
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness
from tests.contract.test_scoring_pipeline import seed_lead

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
Refused = Callable[[str | list[str]], tuple[Harness, WebhookReceiver]]


@pytest.fixture
def refused(backend_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Refused]:
    """Given a Retry-After value: an engine whose sales webhook goes to a receiver that
    answers the first delivery 503 with it, then 200."""
    made: list[tuple[Harness, WebhookReceiver]] = []

    def make(retry_after: str | list[str]) -> tuple[Harness, WebhookReceiver]:
        receiver = WebhookReceiver(SECRET, plan=[(503, {"Retry-After": retry_after})])
        monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_SECRET", SECRET)
        made.append((make_harness(backend_url, EXAMPLE_PLAYBOOK), receiver))
        return made[-1]

    yield make
    for h, receiver in made:
        h.engine.stop()
        receiver.close()


def first_failure(h: Harness, receiver: WebhookReceiver) -> tuple[float, str | None]:
    """Qualify a lead; once the sender has recorded the receiver's refusal, the webhook row's
    (next_attempt_at, last_error)."""
    seed_lead(h)
    eventually(lambda: len(receiver.attempts) == 1, timeout=30)
    rows = eventually(
        lambda: h.sql(
            "SELECT next_attempt_at, last_error FROM outbox "
            "WHERE kind = 'webhook' AND status = 'pending' AND attempts = 1"
        ),
        timeout=30,
    )
    assert len(rows) == 1
    return float(rows[0][0]), rows[0][1]


def test_retry_after_seconds_sets_the_next_attempt(refused: Refused) -> None:
    h, receiver = refused("120")
    now = h.engine.clock.now()  # manual: it does not move by itself
    due, error = first_failure(h, receiver)
    # Our own first backoff is at most 5 s: 120 s is the receiver's word, taken exactly.
    assert due == now + 120
    assert error == "HTTP 503"
    h.advance(120)
    eventually(lambda: len(receiver.deliveries) == 1, timeout=30)
    ids = {a["headers"]["webhook-id"] for a in receiver.attempts}
    assert len(receiver.attempts) == 2 and len(ids) == 1


def test_a_repeated_retry_after_is_honoured(refused: Refused) -> None:
    # Two header lines arrive joined by httpx ("120, 120"): unreadable, so our own 5 s.
    h, receiver = refused(["120", "120"])
    now = h.engine.clock.now()
    due, _ = first_failure(h, receiver)
    assert due == now + 120


def test_retry_after_http_date_is_read_against_the_wall_clock(refused: Refused) -> None:
    # An HTTP-date is wall-clock time: an hour from now, whatever the engine's clock says.
    h, receiver = refused(formatdate(SystemClock().now() + 3600, usegmt=True))
    # The harness starts on a fixed date (2027-01-15), which the wall clock reaches: move the
    # manual clock a month past both, so reading the date against it would show.
    assert h.engine.manual_clock is not None
    h.engine.manual_clock.set(max(h.engine.clock.now(), SystemClock().now()) + 30 * 86400)
    now = h.engine.clock.now()
    assert abs(now - SystemClock().now()) > 7 * 86400  # the manual clock is far from the wall
    due, _ = first_failure(h, receiver)
    # The hour the receiver asked for, less the moments since it wrote the date.
    assert now + 3000 <= due <= now + 3600
