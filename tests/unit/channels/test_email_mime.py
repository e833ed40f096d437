"""The MIME of an email as a mail client reads it back (`email.policy.default`): headers,
display names and encoded words. Pure: `compose` only builds bytes."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from leadloop.channels.email import Envelope, address_of, compose, message_id_header
from leadloop.personalization.templates import RenderedEmail


def parsed(subject: str = "Hi", sender: str = "Acme <news@acme.test>") -> EmailMessage:
    envelope = Envelope(
        sender=sender,
        to="ada@example.com",
        message_id="m1",
        message_id_header=message_id_header("default", "m1", sender),
        unsubscribe_url="https://acme.test/t/u/token",
    )
    outgoing = compose(RenderedEmail(subject, "", "", "Hello\n"), envelope, "", 0.0)
    message = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_a_sender_name_with_a_comma_keeps_its_address() -> None:
    # Written as people write it in a playbook, unquoted: the name is what precedes `<`.
    sender = "Acme, Inc. <news@acme.test>"
    message = parsed(sender=sender)
    (mailbox,) = message["From"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == ("Acme, Inc.", "news@acme.test")
    assert message["Message-ID"].endswith("@acme.test>")
    envelope = Envelope(sender, "Doe, Jane <jane@example.com>", "m1", "<x@acme.test>")
    outgoing = compose(RenderedEmail("Hi", "", "", "Hello\n"), envelope, "", 0.0)
    assert (outgoing.sender, outgoing.recipients) == ("news@acme.test", ("jane@example.com",))


def test_a_profile_email_with_a_named_mailbox_is_its_address() -> None:
    assert address_of("Doe, Jane <Jane@Example.com>") == "jane@example.com"
    assert address_of('"Doe, Jane" <jane@example.com>') == "jane@example.com"
    assert address_of("jane@example.com") == "jane@example.com"


def test_a_quoted_sender_name_keeps_its_quotes_and_backslashes() -> None:
    (mailbox,) = parsed(sender='"Jane \\"JJ\\" Doe" <jane@acme.test>')["From"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == ('Jane "JJ" Doe', "jane@acme.test")
