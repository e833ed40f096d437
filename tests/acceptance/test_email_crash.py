"""A crash between the SMTP server's acceptance and its recording, for real: `leadloop serve`
sends an email to a real SMTP server (aiosmtpd), which takes the message and holds its answer
back; the engine is killed with SIGKILL while it waits, and restarted on the same database.
SMTP has no idempotency key: the email goes a second time once the dead process's lease ends,
and both copies carry the same `Message-ID`, which receivers and mail clients deduplicate by."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from leadloop.clock import SystemClock
from leadloop.log.batch import OutboxRow
from leadloop.outbox.service import LEASE_SECONDS, enqueue
from leadloop.storage.db import DatabaseUrl, connect
from leadloop.testing import ServerProcess, eventually, free_port
from tests.acceptance.test_email_smtp import Inbox, playbook


class HeldInbox(Inbox):
    """Takes each message, then holds its `250` until `answer` is set: the sender cannot know
    the message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        self._loop = asyncio.get_running_loop()
        await asyncio.wait_for(self.answer.wait(), 30)
        return reply

    def release(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.answer.set)


@pytest.fixture
def inbox() -> Iterator[tuple[HeldInbox, int]]:
    held = HeldInbox()
    port = free_port()
    controller = Controller(held, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield held, port
    finally:
        held.release()
        controller.stop()


def _outbox(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = connect(DatabaseUrl.parse(url))
    try:
        return conn.execute(sql, params)
    finally:
        conn.close()


def queue_welcome(url: str, profile: str) -> None:
    """One email in the outbox, due already by the server's (manual) clock."""
    payload = {
        "channel": "email",
        "template": "welcome",
        "message_id": "welcome-ada",
        "profile_id": profile,
        "journey": "onboarding",
        "step": "welcome-mail",
        "instance": "i1",
    }
    due = SystemClock().now() - 3600
    row = OutboxRow("default", "message", "email", "welcome-ada", payload, profile, due)
    conn = connect(DatabaseUrl.parse(url))
    try:
        with conn.transaction():
            enqueue(conn, [row], due)
    finally:
        conn.close()


def test_sigkill_after_smtp_accepted_resends_under_the_same_message_id(
    tmp_path: Path, inbox: tuple[HeldInbox, int]
) -> None:
    held, port = inbox
    url = f"sqlite:///{tmp_path}/email-crash.db"
    (tmp_path / "playbook.yaml").write_text(playbook(port))
    server = ServerProcess(
        database_url=url,
        extra_args=("--clock", "manual", "--playbook", str(tmp_path / "playbook.yaml")),
        log_path=tmp_path / "server.log",
    ).start()
    try:
        server.send_batch(
            [
                {
                    "type": "identify",
                    "userId": "ada",
                    "traits": {"email": "ada@example.com", "first_name": "Ada"},
                }
            ]
        )
        server.wait_processed()
        profile = server.lookup("user_id", "ada")["id"]
        queue_welcome(url, profile)
        # The server holds the message and its answer: sent, and not yet known to be.
        eventually(lambda: len(held.messages) == 1, timeout=30)
        server.kill()  # SIGKILL: no shutdown hook runs
    finally:
        held.release()
        server.stop()

    assert _outbox(url, "SELECT status FROM outbox") == [("pending",)]

    server.start()  # same database; the killed process's claim is still leased
    try:
        # The restarted manual clock starts from wall time: move it past the dead lease.
        status, body = server.admin("POST", "/api/v1/clock/advance", {"seconds": LEASE_SECONDS + 1})
        assert status == 200, body
        eventually(lambda: _outbox(url, "SELECT status FROM outbox") == [("delivered",)])
    finally:
        server.stop()

    assert len(held.messages) == 2
    first, again = (message for _, _, message in held.messages)
    assert first["Message-ID"] and first["Message-ID"] == again["Message-ID"]
    assert first["X-Leadloop-Message-Id"] == again["X-Leadloop-Message-Id"] == "welcome-ada"
