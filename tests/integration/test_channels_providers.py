"""The message sender against the local provider fakes, through a running in-process engine:
WhatsApp (service window, templates), Instagram, Twilio SMS and Meta audiences; retries on
429/500 with the final states; documented 4xx errors recorded as failed with the provider's
reason; signed receipt webhooks (and refused forgeries that change nothing)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import pytest
from starlette.testclient import TestClient

from leadloop.api.channels import channels_router
from leadloop.app import Engine
from leadloop.channels.receipts import twilio_signature
from leadloop.channels.sender import MessageSender
from leadloop.config import Settings
from leadloop.ingest.http import TrackingApp
from leadloop.log.batch import OutboxRow
from leadloop.outbox.service import enqueue
from leadloop.storage import workspaces
from leadloop.testing import eventually
from leadloop.testing_fakes.messaging import FakeMessagingServer

APP_SECRET = "meta-app-secret"
PUBLIC = "http://testserver"


def playbook(base: str) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        channels:
          public_url: {PUBLIC}
          whatsapp:
            api_base: {base}
            token: wa-token
            phone_number_id: "1111"
          instagram:
            api_base: {base}
            token: ig-token
          sms:
            api_base: {base}
            account_sid: AC{"0" * 32}
            auth_token: twilio-token
            from: "+15005550006"
          meta:
            app_secret: {APP_SECRET}
            verify_token: verify-me
          audiences:
            - id: hot
              type: meta
              api_base: {base}
              audience_id: "2222"
              token: ads-token
          templates:
            whatsapp:
              intro:
                text: "Hi {{{{ traits.first_name }}}}, here is the demo"
                media: {{type: video, link: "https://cdn.example.com/demo.mp4"}}
                template: {{name: demo_invite, language: en_US, params: ["{{{{ traits.first_name }}}}"]}}
            instagram:
              dm:
                text: "Hey {{{{ traits.first_name }}}}"
            sms:
              nudge:
                text: "Hi {{{{ traits.first_name }}}}, your trial ends soon"
        """
    )


@dataclass
class Harness:
    engine: Engine
    client: TestClient
    fake: FakeMessagingServer
    token: str
    profile: str

    def queue(self, message_id: str, channel: str, **extra: Any) -> None:
        self.queue_together([message_id], channel, **extra)

    def queue_together(self, message_ids: list[str], channel: str, **extra: Any) -> None:
        """Queue messages in one transaction, as the processor queues a batch's sends: the
        dispatcher claims them together, in order. (Queued one transaction each, they may be
        claimed by its two lanes apart, and which lane reaches a rate limit first is not fixed.)"""
        now = self.engine.clock.now()

        def insert(c: Any) -> None:
            for message_id in message_ids:
                payload = {
                    "channel": channel,
                    "message_id": message_id,
                    "profile_id": self.profile,
                    "journey": "onboarding",
                    "step": "s1",
                    "instance": "i1",
                    **extra,
                }
                row = OutboxRow(
                    "default", "message", channel, message_id, payload, self.profile, now
                )
                enqueue(c, [row], now)

        self.engine.writer.submit(insert).result()
        self.engine.dispatcher.wake()

    def outbox(self, message_id: str) -> tuple[str, int, str | None]:
        rows = self.engine.read_sync(
            lambda c: c.execute(
                "SELECT status, attempts, last_error FROM outbox WHERE idempotency_key = ?",
                (message_id,),
            )
        )
        return rows[0][0], int(rows[0][1]), rows[0][2]

    def settled(self, message_id: str) -> tuple[str, int, str | None]:
        def done() -> tuple[str, int, str | None] | None:
            state = self.outbox(message_id)
            if state[0] == "pending":
                self.engine.dispatcher.wake()
                return None
            return state

        return eventually(done, timeout=20)

    def retry_due(self) -> None:
        """Move the manual clock past any scheduled retry."""
        assert self.engine.manual_clock is not None
        self.engine.manual_clock.advance(3600)
        self.engine.dispatcher.wake()

    def messages(self) -> list[dict[str, Any]]:
        r = self.client.get(
            f"/api/v1/profiles/{self.profile}/messages",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert r.status_code == 200, r.text
        return list(r.json()["messages"])

    def record(self, message_id: str) -> dict[str, Any]:
        return next(m for m in self.messages() if m["message_id"] == message_id)

    def events(self, name: str) -> list[dict[str, Any]]:
        rows = self.engine.read_sync(
            lambda c: c.execute("SELECT body FROM events WHERE event = ? ORDER BY seq", (name,))
        )
        return [msgspec.json.decode(r[0]) for r in rows]


def start_engine(
    tmp_path: Path, text: str, extra: dict[str, str] | None = None
) -> tuple[Engine, TestClient, str, str]:
    engine = Engine(
        Settings(database_url=f"sqlite:///{tmp_path}/db.sqlite", extra=extra or {}),
        manual_clock=True,
    )
    engine.start()
    (tmp_path / "playbook.yaml").write_text(text)
    engine.apply_playbook_file(str(tmp_path / "playbook.yaml"))
    engine.refresh_playbooks()
    engine.dispatcher.senders["message"] = MessageSender.for_engine(engine)
    app = engine.admin_app()
    app.include_router(channels_router(engine))

    def keys(c: Any) -> tuple[str, str]:
        now = engine.clock.now()
        return (
            workspaces.create_write_key(c, "default", "t", now),
            workspaces.create_admin_token(c, "default", "t", now),
        )

    write_key, token = engine.writer.submit(keys).result()
    client = TestClient(TrackingApp(engine, app))
    return engine, client, write_key, token


def stop(engine: Engine) -> None:
    engine.stop()
    sender = engine.dispatcher.senders["message"]
    assert isinstance(sender, MessageSender)
    sender.close()


def identify(engine: Engine, client: TestClient, write_key: str, traits: dict[str, Any]) -> str:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    r = client.post(
        "/v1/identify",
        json={"userId": "u1", "traits": traits, "messageId": "identify-1"},
        headers={"Authorization": f"Basic {auth}"},
    )
    assert r.status_code == 200, r.text
    eventually(lambda: engine.read_sync(engine.status)["lag"] == 0, timeout=20)
    view = engine.read_sync(
        lambda c: c.execute("SELECT profile_id FROM identities WHERE type = 'user_id'")
    )
    return str(view[0][0])


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    with FakeMessagingServer() as fake:
        engine, client, write_key, token = start_engine(tmp_path, playbook(fake.base_url))
        with client:
            profile = identify(
                engine,
                client,
                write_key,
                {
                    "first_name": "Ada",
                    "email": "ada@example.com",
                    "phone": "+44 20 7946 0958",
                    "instagram_psid": "IGSID-1",
                    "ad_consent": True,
                },
            )
            yield Harness(engine, client, fake, token, profile)
        stop(engine)


# --- WhatsApp -----------------------------------------------------------------------------------


def test_whatsapp_outside_the_window_sends_the_approved_template(h: Harness) -> None:
    h.queue("wa-1", "whatsapp", template="intro")
    assert h.settled("wa-1")[0] == "delivered"
    sent = h.fake.whatsapp.accepted[0]
    assert sent["type"] == "template"
    assert sent["to"] == "442079460958"
    assert sent["template"]["name"] == "demo_invite"
    assert sent["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Ada"}]
    record = h.record("wa-1")
    assert record["status"] == "sent"
    assert record["provider_id"] == sent["_id"]


def test_whatsapp_inside_the_window_sends_the_video_with_caption(h: Harness) -> None:
    inbound = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "1111"},
                            "messages": [
                                {
                                    "from": "442079460958",
                                    "id": "wamid.in",
                                    "timestamp": str(int(h.engine.clock.now())),
                                    "type": "text",
                                    "text": {"body": "hello"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    assert meta_post(h, inbound).status_code == 200
    h.fake.open_windows.add("442079460958")
    h.queue("wa-2", "whatsapp", template="intro")
    assert h.settled("wa-2")[0] == "delivered"
    sent = h.fake.whatsapp.accepted[-1]
    assert sent["type"] == "video"
    assert sent["video"] == {
        "link": "https://cdn.example.com/demo.mp4",
        "caption": "Hi Ada, here is the demo",
    }


def test_whatsapp_retries_429_and_500_then_delivers(h: Harness) -> None:
    h.fake.whatsapp.plan_rate_limit(retry_after=30)
    h.fake.whatsapp.plan_server_error(500)
    h.queue("wa-3", "whatsapp", template="intro")
    eventually(lambda: h.outbox("wa-3")[1] == 1)
    assert h.outbox("wa-3")[0] == "pending"
    assert "429" in (h.outbox("wa-3")[2] or "")
    h.retry_due()
    eventually(lambda: h.outbox("wa-3")[1] == 2)
    assert "500" in (h.outbox("wa-3")[2] or "")
    h.retry_due()
    status, attempts, _ = h.settled("wa-3")
    assert (status, attempts) == ("delivered", 3)
    assert len(h.fake.whatsapp.accepted) == 1
    history = [t["status"] for t in h.record("wa-3")["history"]]
    assert history == ["queued", "queued", "queued", "sent"]


def test_whatsapp_documented_4xx_is_failed_with_the_providers_reason(h: Harness) -> None:
    h.fake.whatsapp.plan(
        400,
        {
            "error": {
                "message": "(#131026) Message Undeliverable",
                "type": "OAuthException",
                "code": 131026,
                "fbtrace_id": "x",
            }
        },
    )
    h.queue("wa-4", "whatsapp", template="intro")
    status, attempts, error = h.settled("wa-4")
    assert (status, attempts) == ("dead", 1)
    assert "131026" in (error or "") and "Message Undeliverable" in (error or "")
    record = h.record("wa-4")
    assert record["status"] == "failed"
    assert "Message Undeliverable" in record["reason"]
    failed = h.events("Message Failed")
    assert failed[-1]["properties"]["message_id"] == "wa-4"
    assert failed[-1]["properties"]["journey"] == "onboarding"


# --- Instagram, SMS, audiences --------------------------------------------------------------------


def instagram_inbound(h: Harness, igsid: str = "IGSID-1", ago: float = 0.0) -> None:
    """The person writes to the account (Instagram `messages` webhook): the window opens."""
    at_ms = int((h.engine.clock.now() - ago) * 1000)
    payload = {
        "object": "instagram",
        "entry": [
            {
                "id": "17841400000000000",
                "time": at_ms,
                "messaging": [
                    {
                        "sender": {"id": igsid},
                        "recipient": {"id": "17841400000000000"},
                        "timestamp": at_ms,
                        "message": {"mid": f"in-{igsid}-{at_ms}", "text": "hello"},
                    }
                ],
            }
        ],
    }
    assert meta_post(h, payload).status_code == 200
    if ago < 24 * 3600:
        h.fake.open_instagram_windows.add(igsid)


def test_instagram_dm_and_bad_token(h: Harness) -> None:
    instagram_inbound(h)
    h.queue("ig-1", "instagram", template="dm")
    assert h.settled("ig-1")[0] == "delivered"
    assert h.fake.instagram.accepted[0]["recipient"] == {"id": "IGSID-1"}
    assert h.fake.instagram.accepted[0]["message"] == {"text": "Hey Ada"}
    h.fake.instagram_token = "rotated"
    h.queue("ig-2", "instagram", template="dm")
    status, _, error = h.settled("ig-2")
    assert status == "dead"
    assert "190" in (error or "") and "Invalid OAuth access token" in (error or "")


def test_sms_through_twilio_with_rate_limit_and_status_callback(h: Harness) -> None:
    h.fake.twilio.plan_rate_limit()
    h.queue("sms-1", "sms", template="nudge")
    eventually(lambda: h.outbox("sms-1")[1] == 1)
    h.retry_due()
    assert h.settled("sms-1")[:2] == ("delivered", 2)
    form = h.fake.twilio.accepted[0]
    assert form["To"] == "+442079460958"
    assert form["From"] == "+15005550006"
    assert form["Body"] == "Hi Ada, your trial ends soon"
    assert form["StatusCallback"] == f"{PUBLIC}/hooks/twilio?ref=" + quote(
        '["default","sms-1"]', safe=""
    )
    sid = form["_id"]

    params = {"MessageSid": sid, "MessageStatus": "delivered", "To": form["To"]}
    url = f"{PUBLIC}/hooks/twilio"
    forged = h.client.post(
        "/hooks/twilio",
        content=urlencode(params),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": twilio_signature("wrong-token", url, params.items()),
        },
    )
    assert forged.status_code == 401
    assert h.record("sms-1")["status"] == "sent"
    assert h.events("Message Delivered") == []

    good = h.client.post(
        "/hooks/twilio",
        content=urlencode(params),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": twilio_signature("twilio-token", url, params.items()),
        },
    )
    assert good.status_code == 200
    assert h.record("sms-1")["status"] == "delivered"
    delivered = h.events("Message Delivered")
    assert [e["properties"]["message_id"] for e in delivered] == ["sms-1"]
    assert delivered[0]["properties"]["channel"] == "sms"


def test_an_sms_status_that_overtakes_the_send_answer_lands(h: Harness) -> None:
    # Twilio calls the message's StatusCallback URL, signed over that URL as given: the URL
    # names the message, so a status that arrives before the SID is on record still lands.
    def deliver_early(accepted: dict[str, Any]) -> None:
        url = accepted["StatusCallback"]
        params = {"MessageSid": accepted["_id"], "MessageStatus": "delivered"}
        r = h.client.post(
            url.removeprefix(PUBLIC),
            content=urlencode(params),
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "x-twilio-signature": twilio_signature("twilio-token", url, params.items()),
            },
        )
        assert r.status_code == 200

    h.fake.twilio.on_accept = deliver_early
    h.queue("sms-early", "sms", template="nudge")
    assert h.settled("sms-early")[0] == "delivered"
    record = h.record("sms-early")
    assert (record["status"], record["provider_id"]) == (
        "delivered",
        h.fake.twilio.accepted[0]["_id"],
    )
    assert [e["properties"]["message_id"] for e in h.events("Message Delivered")] == ["sms-early"]


def test_audience_add_and_remove_send_only_hashes(h: Harness) -> None:
    h.queue("aud-1", "audience", audience="hot", action="add")
    assert h.settled("aud-1")[0] == "delivered"
    h.queue("aud-2", "audience", audience="hot", action="remove")
    assert h.settled("aud-2")[0] == "delivered"
    add, remove = h.fake.audiences.accepted
    assert add["method"] == "POST" and remove["method"] == "DELETE"
    assert add["schema"] == ["EMAIL", "PHONE"]
    email_hash = hashlib.sha256(b"ada@example.com").hexdigest()
    phone_hash = hashlib.sha256(b"442079460958").hexdigest()
    assert add["data"] == [[email_hash, phone_hash]]
    raw = b"".join(r.body for r in h.fake.audiences.requests if isinstance(r.body, bytes))
    assert b"ada@example.com" not in raw and b"7946" not in raw
    assert h.fake.audience_members == set()


def test_audience_server_error_then_success(h: Harness) -> None:
    h.fake.audiences.plan_server_error(503)
    h.queue("aud-3", "audience", audience="hot", action="add")
    eventually(lambda: h.outbox("aud-3")[1] == 1)
    h.retry_due()
    assert h.settled("aud-3")[:2] == ("delivered", 2)


# --- Meta receipts ------------------------------------------------------------------------------


def meta_post(h: Harness, payload: dict[str, Any], secret: str = APP_SECRET) -> Any:
    body = msgspec.json.encode(payload)
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return h.client.post(
        "/hooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": signature},
    )


def status_payload(wamid: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"phone_number_id": "1111"},
                            "statuses": [
                                {
                                    "id": wamid,
                                    "status": status,
                                    "timestamp": "1800000000",
                                    "recipient_id": "442079460958",
                                    **extra,
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def test_meta_receipts_verified_then_recorded(h: Harness) -> None:
    h.queue("wa-r", "whatsapp", template="intro")
    assert h.settled("wa-r")[0] == "delivered"
    wamid = h.fake.whatsapp.accepted[0]["_id"]

    assert meta_post(h, status_payload(wamid, "read"), secret="forged").status_code == 401
    unsigned = h.client.post(
        "/hooks/meta", content=msgspec.json.encode(status_payload(wamid, "read"))
    )
    assert unsigned.status_code == 401
    assert h.record("wa-r")["status"] == "sent"
    assert h.events("Message Read") == []

    assert meta_post(h, status_payload(wamid, "delivered")).status_code == 200
    assert meta_post(h, status_payload(wamid, "read")).status_code == 200
    assert meta_post(h, status_payload(wamid, "read")).status_code == 200  # re-delivered
    record = h.record("wa-r")
    assert record["status"] == "opened"
    assert [e["properties"]["message_id"] for e in h.events("Message Delivered")] == ["wa-r"]
    read = h.events("Message Read")
    assert len(read) == 1
    assert read[0]["properties"] == {
        "message_id": "wa-r",
        "journey": "onboarding",
        "step": "s1",
        "channel": "whatsapp",
        "template": "intro",
        "status": "read",
    }


def test_a_receipt_that_overtakes_the_send_answer_lands(h: Harness) -> None:
    # Meta posts `sent` and `delivered` within moments of accepting a message, while the
    # sender may still wait on the batch's other sends: the message has no wamid on record
    # yet. The status echoes the message's `biz_opaque_callback_data`, which names it.
    def deliver_early(accepted: dict[str, Any]) -> None:
        echoed = {k: v for k, v in accepted.items() if k == "biz_opaque_callback_data"}
        r = meta_post(h, status_payload(accepted["_id"], "delivered", **echoed))
        assert r.status_code == 200

    h.fake.whatsapp.on_accept = deliver_early
    h.queue("wa-early", "whatsapp", template="intro")
    assert h.settled("wa-early")[0] == "delivered"
    wamid = h.fake.whatsapp.accepted[0]["_id"]
    record = h.record("wa-early")
    assert (record["status"], record["provider_id"]) == ("delivered", wamid)
    assert [e["properties"]["message_id"] for e in h.events("Message Delivered")] == ["wa-early"]
    # Later receipts find the message by its wamid, recorded though `delivered` came first.
    assert meta_post(h, status_payload(wamid, "read")).status_code == 200
    assert h.record("wa-early")["status"] == "opened"


def test_meta_hub_challenge(h: Harness) -> None:
    ok = h.client.get(
        "/hooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"},
    )
    assert (ok.status_code, ok.text) == (200, "42")
    bad = h.client.get(
        "/hooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "42"},
    )
    assert bad.status_code == 403


def test_disabled_channel_is_skipped_with_the_reason(tmp_path: Path) -> None:
    text = "version: 1\nchannels:\n  templates:\n    sms:\n      nudge: {text: hi}\n"
    engine, client, write_key, _ = start_engine(tmp_path, text)
    try:
        with client, FakeMessagingServer() as fake:
            profile = identify(engine, client, write_key, {"phone": "+442079460958"})
            h = Harness(engine, client, fake, "", profile)
            h.queue("sms-off", "sms", template="nudge")
            status, _, error = h.settled("sms-off")
            assert status == "skipped"
            assert "channel sms is disabled" in (error or "")
            assert "account_sid" in (error or "")
    finally:
        stop(engine)


def test_a_slow_failed_attempt_backs_off_from_its_end(h: Harness) -> None:
    # The wait was counted from the claim, not from the end of the attempt: an attempt slower
    # than the first backoff (5 s) was due again the moment it ended, and was sent again at
    # once (here it would then be delivered, and the row never seen waiting).
    clock = h.engine.manual_clock
    assert clock is not None
    planned = h.fake.whatsapp._next_planned
    calls: list[int] = []

    def slow() -> Any:
        calls.append(1)
        if len(calls) == 1:
            clock.advance(60)  # the provider takes a minute to answer the first request
        return planned()

    h.fake.whatsapp._next_planned = slow  # type: ignore[method-assign]
    h.fake.whatsapp.plan_server_error(500)
    start = clock.now()
    h.queue("wa-slow", "whatsapp", template="intro")
    eventually(lambda: h.outbox("wa-slow")[:2] == ("pending", 1))
    due = h.engine.read_sync(
        lambda c: c.execute("SELECT next_attempt_at FROM outbox WHERE idempotency_key = 'wa-slow'")
    )[0][0]
    assert float(due) >= start + 60 + 2.5
    assert len(calls) == 1


def test_a_phone_typed_in_arabic_digits_reaches_twilio_and_whatsapp_in_ascii(
    tmp_path: Path,
) -> None:
    """The fakes take ASCII digits only, as the providers do; a phone typed in Arabic-Indic
    digits is the same E.164 number."""
    with FakeMessagingServer() as fake:
        engine, client, write_key, token = start_engine(tmp_path, playbook(fake.base_url))
        try:
            with client:
                traits = {"first_name": "Ada", "phone": "+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨"}
                h = Harness(
                    engine, client, fake, token, identify(engine, client, write_key, traits)
                )
                h.queue("sms-ar", "sms", template="nudge")
                h.queue("wa-ar", "whatsapp", template="intro")
                assert h.settled("sms-ar")[0] == "delivered"
                assert h.settled("wa-ar")[0] == "delivered"
                assert fake.twilio.accepted[0]["To"] == "+442079460958"
                assert fake.whatsapp.accepted[0]["to"] == "442079460958"
        finally:
            stop(engine)
