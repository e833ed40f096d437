"""The MIME of an email as a mail client reads it back (`email.policy.default`): headers,
display names and encoded words. Pure: `compose` only builds bytes."""

from __future__ import annotations

import email
import email.policy
import re
from email.header import decode_header, make_header
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


def test_a_profile_email_is_keyed_in_the_identity_graphs_form() -> None:
    for spelling in (
        "Ada@XN--BCHER-KVA.example.",
        "ada@bu\u0308cher.example",
        "ada@bücher.example",
    ):
        assert address_of(f"Ada <{spelling}>") == "ada@bücher.example"
    assert address_of("Jane@Localhost") == "jane@localhost"  # no form in the graph: lower-cased


def test_a_quoted_sender_name_keeps_its_quotes_and_backslashes() -> None:
    (mailbox,) = parsed(sender='"Jane \\"JJ\\" Doe" <jane@acme.test>')["From"].addresses
    assert (mailbox.display_name, mailbox.addr_spec) == ('Jane "JJ" Doe', "jane@acme.test")


def raw_header(subject: str = "Hi", sender: str = "Acme <news@acme.test>") -> str:
    envelope = Envelope(sender, "ada@example.com", "m1", "<x@acme.test>")
    outgoing = compose(RenderedEmail(subject, "", "", "Hello\n"), envelope, "", 0.0)
    return outgoing.data.decode("ascii").split("\r\n\r\n", 1)[0]


def test_long_non_ascii_subject_and_name_are_encoded_words_of_75_characters_at_most() -> None:
    # RFC 2047 section 2: an encoded word is at most 75 characters; longer text is several
    # words separated by CRLF SPACE, which readers join back without the space.
    subject = "Voilà, votre résumé de la semaine: " * 7
    subject = subject.strip()[:255]
    name = "Équipe Marketing de la Société Générale des Élèves et des Étudiants"
    head = raw_header(subject, f"{name} <news@acme.test>")
    words = re.findall(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", head)
    assert words and max(len(w) for w in words) <= 75
    assert max(len(line) for line in head.split("\r\n")) <= 78
    assert parsed(subject)["Subject"] == subject
    # Decoded as RFC 2047 section 6.2 says (the space between adjacent words is dropped):
    # Python's address parser keeps a space there, so a name split inside a word reads wrong.
    sender = re.search(r"^From: (.*?)\r\n(?! )", head + "\r\n", re.MULTILINE | re.DOTALL)
    assert sender is not None
    display, _, address = sender.group(1).replace("\r\n", "").rpartition(" <")
    assert (str(make_header(decode_header(display))), address) == (name, "news@acme.test>")


def test_text_that_looks_like_an_encoded_word_reads_as_written() -> None:
    # A trait in the subject, or a sender name, holding `=?utf-8?q?…?=` is text: sent bare,
    # readers decoded it into other words.
    subject = "Hi =?utf-8?q?Admin?= your invoice"
    assert parsed(subject)["Subject"] == subject
    (mailbox,) = parsed(sender="=?utf-8?q?PayPal?= <news@acme.test>")["From"].addresses
    assert mailbox.display_name == "=?utf-8?q?PayPal?="
