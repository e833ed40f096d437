"""Email end to end: a real SMTP server (aiosmtpd) receives what the engine sends; the MIME is
parsed, and its pixel and links, requested through the running engine, give exactly the expected
events. A tampered link gets 400; the RFC 8058 one-click POST suppresses the address and later
sends are suppressed with the reason; bounces (provider webhook and DSN mail) suppress too."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from aiosmtpd.controller import Controller
from starlette.testclient import TestClient

from leadloop.api.channels import TrackingHits, channels_router
from leadloop.app import Engine
from leadloop.channels import records
from leadloop.channels.email import PREHEADER_STYLE
from leadloop.channels.sender import MessageSender
from leadloop.channels.service import services
from leadloop.config import Settings
from leadloop.ingest.http import TrackingApp
from leadloop.log.batch import OutboxRow
from leadloop.outbox.service import enqueue
from leadloop.outbox.signing import sign_webhook
from leadloop.storage import workspaces
from leadloop.testing import eventually, free_port

PUBLIC = "http://testserver"
HOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
HUMAN = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


def playbook(port: int) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        channels:
          public_url: {PUBLIC}
          email:
            smtp_url: smtp://127.0.0.1:{port}
            from: "Acme News <news@acme.test>"
            reply_to: help@acme.test
            webhook_secret: {HOOK_SECRET}
          templates:
            email:
              welcome:
                subject: "Welcome, {{{{ traits.first_name }}}}"
                preheader: "Read <this> & more"
                html: |
                  <html><body>
                  <p>Hello {{{{ traits.first_name }}}}</p>
                  <a href="https://acme.test/pricing?plan=pro&amp;ref=mail">Pricing</a>
                  <a href='https://docs.acme.test/start'>Docs</a>
                  <a href="mailto:help@acme.test">Mail us</a>
                  <a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a>
                  </body></html>
                text: "Hello {{{{ traits.first_name }}}}, see https://acme.test/pricing"
              controls:
                subject: "Hi\\b{{{{ traits.nick }}}}\\x7f"
                preheader: "Read\\athis\\Pnow"
                html: "<p>Hi</p>"
              shout:
                subject: "Hi"
                text: "{{{{ traits.first_name * 100000 }}}}"
        """
    )


@dataclass
class Mail:
    engine: Engine
    client: TestClient
    inbox: Inbox
    token: str
    profile: str
    auth: str = ""

    def identify(self, message_id: str, **traits: Any) -> None:
        r = self.client.post(
            "/v1/identify",
            json={"userId": "ada", "traits": traits, "messageId": message_id},
            headers={"Authorization": f"Basic {self.auth}"},
        )
        assert r.status_code == 200, r.text
        eventually(lambda: self.engine.read_sync(self.engine.status)["lag"] == 0, timeout=20)

    def queue(self, message_id: str, template: str = "welcome") -> None:
        payload = {
            "channel": "email",
            "template": template,
            "message_id": message_id,
            "profile_id": self.profile,
            "journey": "onboarding",
            "step": "welcome-mail",
            "instance": "i1",
        }
        now = self.engine.clock.now()
        row = OutboxRow("default", "message", "email", message_id, payload, self.profile, now)
        self.engine.writer.submit(lambda c: enqueue(c, [row], now)).result()
        self.engine.dispatcher.wake()

    def settled(self, message_id: str) -> tuple[str, str | None]:
        def done() -> tuple[str, str | None] | None:
            rows = self.engine.read_sync(
                lambda c: c.execute(
                    "SELECT status, last_error FROM outbox WHERE idempotency_key = ?",
                    (message_id,),
                )
            )
            return None if rows[0][0] == "pending" else (rows[0][0], rows[0][1])

        return eventually(done, timeout=20)

    def events(self, name: str) -> list[dict[str, Any]]:
        services(self.engine).hits.drain().result()
        rows = self.engine.read_sync(
            lambda c: c.execute("SELECT body FROM events WHERE event = ? ORDER BY seq", (name,))
        )
        return [msgspec.json.decode(r[0]) for r in rows]

    def record(self, message_id: str) -> dict[str, Any]:
        r = self.client.get(
            f"/api/v1/profiles/{self.profile}/messages",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code == 200, r.text
        return next(m for m in r.json()["messages"] if m["message_id"] == message_id)

    def advance(self, seconds: float) -> None:
        assert self.engine.manual_clock is not None
        self.engine.manual_clock.advance(seconds)


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[Mail]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    engine = Engine(Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite"), manual_clock=True)
    engine.start()
    sender = MessageSender.for_engine(engine)
    try:
        (tmp_path / "playbook.yaml").write_text(playbook(port))
        engine.apply_playbook_file(str(tmp_path / "playbook.yaml"))
        engine.refresh_playbooks()
        engine.dispatcher.senders["message"] = sender
        app = engine.admin_app()
        app.include_router(channels_router(engine))

        def keys(c: Any) -> tuple[str, str]:
            now = engine.clock.now()
            return (
                workspaces.create_write_key(c, "default", "t", now),
                workspaces.create_admin_token(c, "default", "t", now),
            )

        write_key, token = engine.writer.submit(keys).result()
        asgi = TrackingApp(engine, TrackingHits(engine, app))
        with TestClient(asgi, follow_redirects=False) as client:
            auth = base64.b64encode(f"{write_key}:".encode()).decode()
            r = client.post(
                "/v1/identify",
                json={
                    "userId": "ada",
                    "traits": {
                        "first_name": "Ada",
                        "email": "Ada@Example.com",
                        "nick": "Ada\x1b\u2028\x85Lovelace\x7f",
                    },
                    "messageId": "identify-ada",
                },
                headers={"Authorization": f"Basic {auth}"},
            )
            assert r.status_code == 200
            eventually(lambda: engine.read_sync(engine.status)["lag"] == 0, timeout=20)
            profile = engine.read_sync(
                lambda c: c.execute("SELECT profile_id FROM identities WHERE type = 'user_id'")
            )[0][0]
            yield Mail(engine, client, inbox, token, str(profile), auth)
    finally:
        engine.stop()
        sender.close()
        controller.stop()


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_email_tracking_unsubscribe_and_suppression(mail: Mail) -> None:
    mail.queue("em-1")
    assert mail.settled("em-1") == ("delivered", None)
    assert len(mail.inbox.messages) == 1
    mail_from, rcpt, message = mail.inbox.messages[0]
    assert (mail_from, rcpt) == ("news@acme.test", ["ada@example.com"])
    assert message["Subject"] == "Welcome, Ada"
    assert message["From"] == "Acme News <news@acme.test>"
    assert message["Reply-To"] == "help@acme.test"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.fullmatch(r"<(.+)>", str(message["List-Unsubscribe"]))
    assert unsubscribe and unsubscribe.group(1).startswith(f"{PUBLIC}/t/u/")
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and "Hello Ada" in str(text.get_content())

    markup = html_part(message)
    assert "Read &lt;this&gt; &amp; more" in markup  # the preheader, escaped and hidden
    pixels = re.findall(r'<img src="([^"]+)"', markup)
    assert len(pixels) == 1 and pixels[0].startswith(f"{PUBLIC}/t/o/")
    links = re.findall(r"""href=["']([^"']+)["']""", markup)
    assert "mailto:help@acme.test" in links
    tracked = [link for link in links if link.startswith(f"{PUBLIC}/t/c/")]
    assert len(tracked) == 2
    assert unsubscribe.group(1) in links  # the unsubscribe link is not wrapped in a redirect
    assert "acme.test/pricing" not in markup.replace("news@acme.test", "")

    # The engine sees the message as sent; opening it a minute later is a person.
    record = mail.record("em-1")
    assert record["status"] == "sent"
    assert record["provider_id"] == message["Message-ID"]
    mail.advance(60)
    pixel = mail.client.get(urlsplit(pixels[0]).path, headers={"user-agent": HUMAN})
    assert pixel.status_code == 200
    assert pixel.headers["content-type"] == "image/gif"
    assert pixel.content.startswith(b"GIF89a")

    mail.advance(5)
    first = mail.client.get(urlsplit(tracked[0]).path, headers={"user-agent": HUMAN})
    assert first.status_code == 302
    assert first.headers["location"] == "https://acme.test/pricing?plan=pro&ref=mail"
    mail.advance(5)
    second = mail.client.get(urlsplit(tracked[1]).path)
    assert (second.status_code, second.headers["location"]) == (302, "https://docs.acme.test/start")

    # Tampering: a changed signature, a foreign target with the old signature, a pixel token
    # used as a click, garbage. None redirects.
    path = urlsplit(tracked[0]).path
    token = path.rsplit("/", 1)[1]
    payload, signature = token.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    foreign = (
        base64.urlsafe_b64encode(
            msgspec.json.encode(["c", "default", "em-1", "https://evil.example/"])
        )
        .rstrip(b"=")
        .decode()
    )
    pixel_token = urlsplit(pixels[0]).path.rsplit("/", 1)[1].removesuffix(".gif")
    for bad in (f"{payload}.{flipped}", f"{foreign}.{signature}", pixel_token, "x"):
        refused = mail.client.get(f"/t/c/{bad}")
        assert refused.status_code == 400, bad
        assert "location" not in refused.headers
    assert mail.client.get("/t/o/garbage.gif").status_code == 400

    opened = mail.events("Email Opened")
    assert len(opened) == 1
    props = opened[0]["properties"]
    assert props["automated"] is False
    assert {k: props[k] for k in ("message_id", "journey", "step", "channel")} == {
        "message_id": "em-1",
        "journey": "onboarding",
        "step": "welcome-mail",
        "channel": "email",
    }
    assert opened[0]["profileId"] == mail.profile
    clicked = mail.events("Email Link Clicked")
    assert [e["properties"]["url"] for e in clicked] == [
        "https://acme.test/pricing?plan=pro&ref=mail",
        "https://docs.acme.test/start",
    ]
    # Only the first click says so: a variant's click rate counts messages clicked.
    assert [e["properties"]["first_click"] for e in clicked] == [True, False]
    assert mail.record("em-1")["status"] == "clicked"

    # A privacy proxy fetching the pixel is flagged as automated.
    mail.advance(1)
    proxy = (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    )
    assert (
        mail.client.get(urlsplit(pixels[0]).path, headers={"user-agent": proxy}).status_code == 200
    )
    opens = mail.events("Email Opened")
    assert [o["properties"]["automated"] for o in opens] == [False, True]

    # The unsubscribe page does not unsubscribe by itself (scanners GET every link)...
    page = mail.client.get(urlsplit(unsubscribe.group(1)).path)
    assert page.status_code == 200 and "<form" in page.text
    assert mail.events("Unsubscribed") == []
    # ...the RFC 8058 one-click POST does, at once.
    done = mail.client.post(
        urlsplit(unsubscribe.group(1)).path,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    unsubscribed = mail.events("Unsubscribed")
    assert len(unsubscribed) == 1
    assert unsubscribed[0]["properties"]["source"] == "one-click"
    assert unsubscribed[0]["properties"]["message_id"] == "em-1"

    mail.queue("em-2")
    status, reason = mail.settled("em-2")
    assert status == "skipped"
    assert reason is not None and "suppressed" in reason and "unsubscribed" in reason
    record = mail.record("em-2")
    assert record["status"] == "suppressed"
    assert "unsubscribed (one-click)" in record["reason"]
    assert len(mail.inbox.messages) == 1


def test_connection_is_reused_across_messages(mail: Mail) -> None:
    for n in range(5):
        mail.queue(f"bulk-{n}")
    for n in range(5):
        assert mail.settled(f"bulk-{n}")[0] == "delivered"
    assert len(mail.inbox.messages) == 5
    transport = next(iter(services(mail.engine)._smtp.values()))
    assert transport.connects <= services(mail.engine).smtp_connections


def test_control_characters_never_reach_the_subject_or_preheader(mail: Mail) -> None:
    # Backspace, DEL, BEL and U+2029 from the template; ESC, U+2028, U+0085, DEL from a trait.
    mail.queue("em-ctl", template="controls")
    assert mail.settled("em-ctl") == ("delivered", None)
    message = mail.inbox.messages[0][2]
    assert message["Subject"] == "Hi Ada Lovelace"
    assert f'<div style="{PREHEADER_STYLE}">Read this now</div>' in html_part(message)
    for name, value in message.items():
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", str(value)), name


def test_template_amplification_is_refused_at_send_time(mail: Mail) -> None:
    mail.queue("em-shout", template="shout")
    status, reason = mail.settled("em-shout")
    assert status == "dead"
    assert reason is not None and "repetition over" in reason
    assert mail.record("em-shout")["status"] == "failed"
    assert mail.inbox.messages == []


def signed(body: bytes, msg_id: str, when: float) -> dict[str, str]:
    return sign_webhook(HOOK_SECRET, msg_id, int(when), body)


def dsn_mail(final_recipient: str, returned_headers: str) -> bytes:
    """A DSN (RFC 3464) of a hard bounce, the returned message's headers in a part of its own."""
    head = textwrap.dedent(
        f"""\
        From: MAILER-DAEMON@mx.example.com
        To: news@acme.test
        Subject: Undelivered Mail Returned to Sender
        MIME-Version: 1.0
        Content-Type: multipart/report; report-type=delivery-status; boundary="B"

        --B
        Content-Type: text/plain

        Delivery failed.
        --B
        Content-Type: message/delivery-status

        Reporting-MTA: dns; mx.example.com

        Final-Recipient: rfc822; {final_recipient}
        Action: failed
        Status: 5.1.1
        Diagnostic-Code: smtp; 550 5.1.1 user unknown

        --B
        Content-Type: text/rfc822-headers

        """
    )
    return f"{head}{returned_headers}\n\n--B--\n".encode()


def test_bounces_from_the_provider_webhook_and_from_dsn_mail(mail: Mail) -> None:
    mail.queue("em-b")
    assert mail.settled("em-b")[0] == "delivered"
    message_id = str(mail.inbox.messages[0][2]["Message-ID"])
    now = mail.engine.clock.now()

    notice = msgspec.json.encode(
        {"type": "bounce", "email": "ada@example.com", "reason": "550 5.1.1 no such user"}
    )
    forged = sign_webhook("whsec_" + base64.b64encode(b"x" * 32).decode(), "n1", int(now), notice)
    assert mail.client.post("/hooks/email/acme", content=notice, headers=forged).status_code == 401
    assert mail.events("Email Bounced") == []
    assert mail.record("em-b")["status"] == "sent"

    dsn = dsn_mail(
        "ada@example.com",
        f"Message-ID: {message_id}\nX-Leadloop-Message-Id: em-b\nSubject: Welcome, Ada",
    )
    headers = {**signed(dsn, "dsn-1", now), "content-type": "message/rfc822"}
    answer = mail.client.post("/hooks/email/dsn", content=dsn, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["matched"] == 1
    record = mail.record("em-b")
    assert record["status"] == "bounced"
    assert "5.1.1" in record["reason"]
    bounced = mail.events("Email Bounced")
    assert len(bounced) == 1 and bounced[0]["properties"]["permanent"] is True

    mail.queue("em-after")
    status, reason = mail.settled("em-after")
    assert status == "skipped" and reason is not None and "bounced" in reason


def test_a_bounce_after_forwarding_suppresses_the_address_the_message_went_to(mail: Mail) -> None:
    # ada@example.com forwards to an address that no longer exists: the DSN names that final
    # recipient, and the returned headers name our message. The address to stop mailing is
    # the one we sent to (it bounces on every send); the other one was never ours.
    mail.queue("em-f")
    assert mail.settled("em-f")[0] == "delivered"
    now = mail.engine.clock.now()
    dsn = dsn_mail("ada@oldjob.test", "X-Leadloop-Message-Id: em-f")
    headers = {**signed(dsn, "dsn-f", now), "content-type": "message/rfc822"}
    answer = mail.client.post("/hooks/email/dsn", content=dsn, headers=headers)
    assert answer.status_code == 200 and answer.json()["matched"] == 1
    assert mail.record("em-f")["status"] == "bounced"
    suppressed = mail.engine.read_sync(
        lambda c: c.execute("SELECT address FROM channel_suppressions ORDER BY address")
    )
    assert [r[0] for r in suppressed] == ["ada@example.com"]
    mail.queue("em-f2")
    status, reason = mail.settled("em-f2")
    assert status == "skipped" and reason is not None and "bounced" in reason


def test_a_one_click_post_as_multipart_form_data_is_one_click(mail: Mail) -> None:
    # RFC 8058 section 8's own example: the mailbox provider may post the key/value pair as
    # multipart/form-data.
    mail.queue("em-m")
    assert mail.settled("em-m")[0] == "delivered"
    link = re.fullmatch(r"<(.+)>", str(mail.inbox.messages[0][2]["List-Unsubscribe"]))
    assert link is not None
    body = (
        "--FEDCBA09876543210\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n'
        "\r\n"
        "One-Click\r\n"
        "--FEDCBA09876543210--\r\n"
    )
    done = mail.client.post(
        urlsplit(link.group(1)).path,
        content=body,
        headers={"content-type": "multipart/form-data; boundary=FEDCBA09876543210"},
    )
    assert done.status_code == 200
    (unsubscribed,) = mail.events("Unsubscribed")
    assert unsubscribed["properties"]["source"] == "one-click"


def test_an_international_domain_goes_out_in_punycode_to_a_server_without_smtputf8(
    mail: Mail,
) -> None:
    # The identity graph keeps a domain in Unicode (`bücher.example`); aiosmtpd, like most
    # servers, offers no SMTPUTF8, and an RFC 5321 envelope and RFC 5322 header are ASCII.
    mail.identify("identify-idn", email="Ada@BÜCHER.example")
    mail.queue("em-idn")
    assert mail.settled("em-idn") == ("delivered", None)
    _, recipients, message = mail.inbox.messages[0]
    assert recipients == ["ada@xn--bcher-kva.example"]
    assert message["To"].addresses[0].addr_spec == "ada@xn--bcher-kva.example"
    raw = message.as_bytes()
    assert raw.isascii(), [line for line in raw.splitlines() if not line.isascii()]
    # The record (and so a suppression) keeps the address in the identity graph's form.
    stored = mail.engine.read_sync(
        lambda c: c.execute("SELECT address FROM message_records WHERE message_id = 'em-idn'")
    )
    assert [r[0] for r in stored] == ["ada@bücher.example"]


def test_a_domain_with_no_ascii_form_fails_that_message_alone(mail: Mail) -> None:
    # IDNA refuses `_` (the identity graph keeps such a domain, in NFC): there is no form to
    # write in `RCPT TO` without SMTPUTF8. aiosmtplib's UnicodeEncodeError failed the whole
    # batch, each time it was retried.
    mail.queue("em-plain")
    assert mail.settled("em-plain") == ("delivered", None)
    mail.identify("identify-bad-idn", email="ada@mail_relay.bücher.example")
    mail.queue("em-bad-idn")
    status, reason = mail.settled("em-bad-idn")
    assert status == "dead" and reason is not None and "ASCII" in reason, reason
    assert len(mail.inbox.messages) == 1


def test_an_unsubscribe_under_one_spelling_of_a_domain_holds_for_every_other(mail: Mail) -> None:
    # One mailbox, three spellings of its domain: punycode with the root's dot, decomposed
    # (NFD) and composed. The suppression list is keyed by the identity graph's form, so an
    # unsubscribe under the first stops mail to the others.
    mail.identify("identify-puny", email="Ada@XN--BCHER-KVA.example.")
    mail.queue("em-puny")
    assert mail.settled("em-puny") == ("delivered", None)
    _, recipients, message = mail.inbox.messages[0]
    assert recipients == ["ada@xn--bcher-kva.example"]
    stored = mail.engine.read_sync(
        lambda c: c.execute("SELECT address FROM message_records WHERE message_id = 'em-puny'")
    )
    assert [r[0] for r in stored] == ["ada@bücher.example"]
    link = re.fullmatch(r"<(.+)>", str(message["List-Unsubscribe"]))
    assert link is not None
    done = mail.client.post(
        urlsplit(link.group(1)).path,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    suppressed = mail.engine.read_sync(
        lambda c: c.execute("SELECT address FROM channel_suppressions")
    )
    assert [r[0] for r in suppressed] == ["ada@bücher.example"]

    for n, spelling in enumerate(["ada@bu\u0308cher.example", "ada@bücher.example"]):
        mail.identify(f"identify-spelling-{n}", email=spelling)
        mail.queue(f"em-spelling-{n}")
        status, reason = mail.settled(f"em-spelling-{n}")
        assert status == "skipped" and reason is not None and "unsubscribed" in reason, reason
    assert len(mail.inbox.messages) == 1


def test_a_suppression_stored_under_the_old_lower_cased_key_still_holds(mail: Mail) -> None:
    # Before the list was keyed by the identity graph's form, its key was the trait only
    # lower-cased: such rows are still there, and the person must stay unsubscribed.
    now = mail.engine.clock.now()
    mail.engine.writer.submit(
        lambda c: records.suppress(
            c, "default", "email", "ada@xn--bcher-kva.example.", "unsubscribed", "one-click", now
        )
    ).result()
    mail.identify("identify-old-key", email="Ada@XN--BCHER-KVA.example.")
    mail.queue("em-old-key")
    status, reason = mail.settled("em-old-key")
    assert status == "skipped" and reason is not None and "unsubscribed" in reason, reason
    assert mail.inbox.messages == []


def test_a_dsn_naming_only_the_punycode_recipient_bounces_the_unicode_address(
    mail: Mail,
) -> None:
    # The DSN names the address as it went in `RCPT TO` and quotes none of our headers.
    mail.identify("identify-idn-bounce", email="ada@bücher.example")
    mail.queue("em-idn-b")
    assert mail.settled("em-idn-b") == ("delivered", None)
    assert mail.inbox.messages[0][1] == ["ada@xn--bcher-kva.example"]
    now = mail.engine.clock.now()
    dsn = dsn_mail("ada@xn--bcher-kva.example", "Subject: Welcome, Ada")
    headers = {**signed(dsn, "dsn-idn", now), "content-type": "message/rfc822"}
    answer = mail.client.post("/hooks/email/dsn", content=dsn, headers=headers)
    assert answer.status_code == 200 and answer.json()["matched"] == 1, answer.text
    assert mail.record("em-idn-b")["status"] == "bounced"
    mail.identify("identify-idn-nfd", email="ada@bu\u0308cher.example")
    mail.queue("em-idn-b2")
    status, reason = mail.settled("em-idn-b2")
    assert status == "skipped" and reason is not None and "bounced" in reason, reason
    assert len(mail.inbox.messages) == 1
