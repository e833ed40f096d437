"""Message records as a bounce that names no message finds them, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from leadloop.channels import records
from leadloop.channels.receipts import parse_email_webhook
from leadloop.channels.records import MessageRecord
from leadloop.channels.service import apply_receipts, unsubscribe

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


def test_a_bounce_naming_only_a_punycode_recipient_finds_the_message_and_its_key(
    conn: Any,
) -> None:
    """The record holds the identity graph's form; the provider names the wire's (punycode)."""
    with conn.transaction():
        records.create(conn, _sent("m-1", AT, address="ada@bücher.example"), AT)
    notices = [
        *parse_email_webhook({"type": "bounce", "email": "ada@xn--bcher-kva.example"}),
        *parse_email_webhook({"type": "complaint", "email": "bob@XN--BCHER-KVA.example."}),
    ]
    with conn.transaction():
        assert apply_receipts(conn, "default", notices, AT + 60) == 1
    assert records.get(conn, "default", "m-1").status == "bounced"  # type: ignore[union-attr]
    rows = conn.execute("SELECT address, reason FROM channel_suppressions ORDER BY address")
    assert [tuple(r) for r in rows] == [
        ("ada@bücher.example", "bounced"),
        ("bob@bücher.example", "complained"),
    ]


def test_a_bounce_of_a_message_stored_under_a_former_spelling_suppresses_the_graphs_form(
    conn: Any,
) -> None:
    """Records written before addresses took the identity graph's form hold the trait only
    lower-cased; the suppression their bounce writes is keyed as the sender looks it up."""
    with conn.transaction():
        records.create(conn, _sent("m-1", AT, address="ada@xn--bcher-kva.example."), AT)
    notice = parse_email_webhook({"type": "bounce", "message_id": "m-1"})
    with conn.transaction():
        assert apply_receipts(conn, "default", notice, AT + 60) == 1
    rows = conn.execute("SELECT address FROM channel_suppressions")
    assert [r[0] for r in rows] == ["ada@bücher.example"]


def test_an_unsubscribe_from_a_message_stored_under_a_former_spelling_is_keyed_as_sends_look(
    conn: Any,
) -> None:
    """The link of a message sent before addresses took the identity graph's form still
    unsubscribes the person, whichever spelling their email trait has now."""
    with conn.transaction():
        records.create(conn, _sent("m-1", AT, address="ada@xn--bcher-kva.example."), AT)
        assert unsubscribe(conn, "default", "m-1", "one-click", AT + 60) is not None
    rows = conn.execute("SELECT address, reason FROM channel_suppressions")
    assert [tuple(r) for r in rows] == [("ada@bücher.example", "unsubscribed")]
