"""Message records as a bounce that names no message finds them, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.channels import records
from leadloop.channels.records import MessageRecord

AT = 1_800_000_000.0


def _sent(message_id: str, created_at: float, address: str = "ann@acme.test") -> MessageRecord:
    return MessageRecord(
        workspace_id="default",
        message_id=message_id,
        profile_id="p1",
        channel="email",
        template="welcome",
        journey=None,
        step=None,
        address=address,
        provider_id=None,
        status="sent",
        reason="",
        sent_at=created_at,
        created_at=created_at,
        updated_at=created_at,
    )


@pytest.mark.parametrize("workspace", ["default", None])
def test_latest_to_breaks_a_tie_on_the_instant_by_insertion_order(
    conn: Any, workspace: str | None
) -> None:
    """Two messages to one address at the same instant: the one stored last is the newest,
    whatever the backend or the message ids' order (here the reverse of insertion)."""
    with conn.transaction():
        records.create(conn, _sent("m-9", AT - 60), AT - 60)
        for message_id in ("m-3", "m-2", "m-1"):
            records.create(conn, _sent(message_id, AT), AT)
        records.create(conn, _sent("m-0", AT + 60, address="bob@acme.test"), AT + 60)
    latest = records.latest_to(conn, workspace, "email", "ann@acme.test")
    assert latest is not None and latest.message_id == "m-1"


def test_suppression_answers_for_the_first_of_an_addresses_keys_that_is_listed(
    conn: Any,
) -> None:
    """An address is looked up under its current key and its former one (rows written before
    the key took the identity graph's form stay in force)."""
    with conn.transaction():
        records.suppress(
            conn, "default", "email", "ann@xn--bcher-kva.example.", "bounced", "dsn", AT
        )
    assert records.suppression(conn, "default", "email", "ann@bücher.example") is None
    found = records.suppression(
        conn, "default", "email", "ann@bücher.example", "ann@xn--bcher-kva.example."
    )
    assert found == "bounced (dsn)"
