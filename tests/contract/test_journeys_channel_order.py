"""`channel_order: preferred` through the processor on both backends: the channel the profile
reads comes first, a profile without history keeps the listed order, and the policy still
decides (no consent on the preferred channel: the next one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leadloop.channels import records
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import START, flows, outbox, person

pytestmark = pytest.mark.usefixtures("channels_env")

FRAGMENT = """
journeys:
  templates:
    email: [nudge]
    whatsapp: [nudge]
  flows:
    - id: nudge
      entry: { event: Go }
      steps:
        - id: nudge
          type: send
          channels: [email, whatsapp]
          channel_order: preferred
          template: nudge
"""


def history(h: Harness, pid: str, channel: str, sent: int, read: int) -> None:
    """Messages sent to the profile on `channel`, and read receipts for the first `read`."""

    def write(c: Any) -> None:
        for i in range(sent):
            mid = f"old-{pid}-{channel}-{i}"
            c.execute(
                "INSERT INTO sends (workspace_id, message_id, profile_id, instance_id, "
                "journey_id, step, requested_channel, channel, template, transactional, at, "
                "outcome, reason, until) VALUES ('default', ?, ?, 'ji_old', 'old', 's', ?, ?, "
                "'t', 0, ?, 'queued', '', NULL)",
                (mid, pid, channel, channel, START - 3600.0 * (i + 1)),
            )
            if i < read:
                props = {"message_id": mid, "channel": channel}
                name = "Message Read" if channel != "email" else "Email Opened"
                records.emit(c, "default", f"read-{mid}", name, pid, props, START - 60, START - 60)

    h.engine.writer.submit(write).result()


def test_the_channel_the_profile_reads_comes_first(backend_url: str, tmp_path: Path) -> None:
    with flows(backend_url, tmp_path, FRAGMENT) as h:
        reader = person(h, "reader", phone="+14155550100", whatsapp_opt_in=True)
        fresh = person(h, "fresh", phone="+14155550101", whatsapp_opt_in=True)
        no_consent = person(h, "noconsent", phone="+14155550102")
        for pid in (reader, no_consent):
            history(h, pid, "email", sent=4, read=0)
            history(h, pid, "whatsapp", sent=2, read=2)
        h.settle()
        h.send(
            *(
                {"type": "track", "userId": u, "event": "Go"}
                for u in ("reader", "fresh", "noconsent")
            )
        )
        h.settle()
        assert [d for d, _p in outbox(h, "message", reader)] == ["whatsapp"]
        assert [d for d, _p in outbox(h, "message", fresh)] == ["email"]
        assert [d for d, _p in outbox(h, "message", no_consent)] == ["email"]
        path = h.sql("SELECT detail, more_lines FROM journey_path WHERE profile_id = ?", reader)
        assert "whatsapp nudge (preferred order: whatsapp, email)" in str(path)
