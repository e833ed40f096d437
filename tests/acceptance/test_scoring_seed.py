"""The seed scoring scenario end to end: Segment's Python client → leadloop → a signed
webhook verified by the `standardwebhooks` library; decay on the manual clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from segment.analytics import Client

from leadloop.testing import ServerProcess, WebhookReceiver, eventually

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DAY = 86400


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET)
    yield r
    r.close()


def start(tmp_path: Path, receiver_url: str) -> ServerProcess:
    return ServerProcess(
        database_url=f"sqlite:///{tmp_path}/seed.db",
        extra_args=("--clock", "manual", "--playbook", str(ROOT / "examples" / "playbook.yaml")),
        env={"LEADLOOP_SALES_WEBHOOK_URL": receiver_url, "LEADLOOP_SALES_WEBHOOK_SECRET": SECRET},
        log_path=tmp_path / "server.log",
    ).start()


def lead(server: ServerProcess, user: str) -> dict[str, Any]:
    server.wait_processed()
    prof = server.lookup("user_id", user)
    assert prof is not None
    return prof["scores"]["lead"]  # type: ignore[no-any-return]


def advance(server: ServerProcess, seconds: int) -> None:
    status, _ = server.admin("POST", "/api/v1/clock/advance", {"seconds": seconds})
    assert status == 200


def test_seed_scenario_with_the_segment_client(tmp_path: Path, receiver: WebhookReceiver) -> None:
    server = start(tmp_path, receiver.url)
    try:
        client = Client(server.write_key, host=server.base, sync_mode=True)
        client.identify("vp-42", {"email": "vp@acme.test", "title": "Vice President, Sales"})
        client.group("vp-42", "acme", {"name": "Acme", "employees": 500})
        client.page("vp-42", name="Home", properties={"path": "/", "url": "https://acme.test/"})
        client.page("vp-42", name="Pricing", properties={"path": "/pricing"})
        client.track("vp-42", "Lead Magnet Downloaded", {"asset": "guide"})
        s = lead(server, "vp-42")
        assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (52, 25, 27, "MQL")

        eventually(lambda: len(receiver.deliveries) == 1)
        hook = receiver.deliveries[0]
        assert hook["verified"] is True
        payload = json.loads(hook["body"])
        assert payload["stage"] == "MQL" and payload["score"]["total"] == 52
        assert {"type": "email", "value": "vp@acme.test"} in payload["identities"]
        assert payload["traits"]["title"] == "Vice President, Sales"
        assert {r["rule"] for r in payload["reasons"]} >= {"pricing_page", "lead_magnet"}

        client.page("vp-42", name="Pricing", properties={"path": "/pricing"})
        client.track("vp-42", "Lead Magnet Downloaded", {"asset": "other"})
        server.wait_processed()
        advance(server, 0)  # gives the dispatcher a moment; nothing new may arrive
        assert len(receiver.attempts) == 1
    finally:
        server.stop()


def test_decay_after_31_and_61_days(tmp_path: Path, receiver: WebhookReceiver) -> None:
    server = start(tmp_path, receiver.url)
    try:
        client = Client(server.write_key, host=server.base, sync_mode=True)
        client.identify("vp-7", {"title": "VP Marketing", "company_size": 500})
        client.page("vp-7", properties={"path": "/"})
        client.page("vp-7", properties={"path": "/pricing"})
        client.track("vp-7", "Lead Magnet Downloaded")
        assert lead(server, "vp-7")["score"] == 52
        advance(server, 31 * DAY)
        s = lead(server, "vp-7")
        assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (32, 25, 7, "MQL")
        advance(server, 30 * DAY)
        s = lead(server, "vp-7")
        assert (s["score"], s["fit"], s["engagement"], s["stage"]) == (25, 25, 0, "MQL")
        out = subprocess.run(
            [sys.executable, "-m", "leadloop", "explain", "vp-7"],
            env={**os.environ, "LEADLOOP_DATABASE_URL": server.database_url},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "lead: 25 = fit 25 + engagement 0" in out
        assert "senior_title" in out and "decay" in out
        for model, status, words in (("lead", 0, "lead: 25"), ("leads", 2, "(it has: lead)")):
            shown = subprocess.run(
                [sys.executable, "-m", "leadloop", "explain", "vp-7", "--model", model],
                env={**os.environ, "LEADLOOP_DATABASE_URL": server.database_url},
                capture_output=True,
                text=True,
            )
            assert shown.returncode == status and words in shown.stdout + shown.stderr, model
    finally:
        server.stop()


def test_webhook_retries_then_dead_letter_then_redrive(tmp_path: Path) -> None:
    receiver = WebhookReceiver(SECRET, plan=[500, 500])
    server = start(tmp_path, receiver.url)
    try:
        client = Client(server.write_key, host=server.base, sync_mode=True)
        client.identify("vp-1", {"title": "Chief Revenue Officer", "company_size": 900})
        client.page("vp-1", properties={"path": "/pricing"})
        client.track("vp-1", "Lead Magnet Downloaded")
        eventually(lambda: len(receiver.attempts) >= 1)

        def delivered() -> bool:
            # Each failure schedules a retry minutes ahead; keep moving time past it.
            advance(server, 600)
            return len(receiver.deliveries) == 1

        eventually(delivered, interval=0.2)
        ids = {a["headers"]["webhook-id"] for a in receiver.attempts}
        assert len(receiver.attempts) == 3 and len(ids) == 1
        assert [a["status"] for a in receiver.attempts] == [500, 500, 200]
        receiver.close()

        # A receiver that stays down: dead-lettered after the retry budget.
        client.identify("vp-2", {"title": "VP Sales", "company_size": 900})
        client.page("vp-2", properties={"path": "/pricing"})
        client.track("vp-2", "Lead Magnet Downloaded")
        server.wait_processed()

        def dead() -> list[dict[str, Any]]:
            advance(server, 7200)
            status, body = server.admin("GET", "/api/v1/outbox?status=dead")
            return body["items"] if status == 200 else []

        items = eventually(dead, timeout=60, interval=0.2)
        assert items[0]["kind"] == "webhook" and "gave up" in items[0]["last_error"]

        back = WebhookReceiver(SECRET, port=receiver.port)  # the receiver is back up
        try:
            out = subprocess.run(
                [sys.executable, "-m", "leadloop", "outbox", "replay", "--kind", "webhook"],
                env={**os.environ, "LEADLOOP_DATABASE_URL": server.database_url},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "re-driven 1" in out
            eventually(lambda: len(back.deliveries) == 1, timeout=30)
            assert back.deliveries[0]["verified"] is True
            assert back.deliveries[0]["headers"]["webhook-id"] == items[0]["idempotency_key"]
        finally:
            back.close()
    finally:
        server.stop()
