"""The public channel endpoints (receipt webhooks, tracking links) against hostile input,
through the real ASGI app and engine, with two workspaces that each have their own provider
secrets: a delivery signed by one workspace's secret changes nothing of the other's, odd but
signed deliveries are answered without a 500, and refusals change nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest

from leadloop.channels import records
from leadloop.channels.receipts import twilio_signature
from leadloop.channels.records import MessageRecord
from leadloop.channels.service import services
from leadloop.channels.tracking import Token, sign
from leadloop.outbox.signing import sign_webhook
from tests.integration.conftest import Api

NUMBER = {"default": "1111", "other": "2222"}
EMAIL_SECRET = {ws: "whsec_" + base64.b64encode(ws[0].encode() * 32).decode() for ws in NUMBER}


def playbook(ws: str) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        workspace: {ws}
        channels:
          public_url: http://testserver
          whatsapp: {{token: t, phone_number_id: "{NUMBER[ws]}"}}
          sms: {{account_sid: AC{"0" * 32}, auth_token: twilio-{ws}, from: "+15005550006"}}
          meta: {{app_secret: meta-{ws}, verify_token: verify-{ws}}}
          email: {{smtp_url: "smtp://127.0.0.1:1", from: "news@acme.test",
                   webhook_secret: "{EMAIL_SECRET[ws]}"}}
        """
    )


SENT = {"wa-1": ("whatsapp", "wamid.X"), "sms-1": ("sms", "SM123"), "em-1": ("email", "<e@x>")}


@pytest.fixture
def hooks(any_api: Api, tmp_path: Path) -> Iterator[Api]:
    """Both workspaces configured; `default` has sent one message on each channel."""
    engine = any_api.engine
    for ws in NUMBER:
        (tmp_path / f"{ws}.yaml").write_text(playbook(ws))
        engine.apply_playbook_file(str(tmp_path / f"{ws}.yaml"))
    engine.refresh_playbooks()
    now = engine.clock.now()

    def create(c: Any) -> None:
        for message_id, (channel, provider_id) in SENT.items():
            address = "ada@example.com" if channel == "email" else "+447900000001"
            record = MessageRecord(
                "default", message_id, None, channel, "t", None, None, address, provider_id,
                "sent", "", now, now, now,
            )  # fmt: skip
            records.create(c, record, now)

    engine.writer.submit(create).result()
    yield any_api


def state(api: Api) -> tuple[Any, ...]:
    """Everything a receipt or an inbound message can change."""

    def read(c: Any) -> tuple[Any, ...]:
        return tuple(
            sorted(map(tuple, c.execute(f"SELECT * FROM {table}")))
            for table in ("message_records", "channel_windows", "channel_suppressions", "events")
        )

    return api.engine.read_sync(read)


def status(api: Api, message_id: str) -> str:
    record = api.engine.read_sync(lambda c: records.get(c, "default", message_id))
    assert record is not None
    return record.status


def meta_post(api: Api, payload: Any, secret: str, raw: bytes | None = None) -> Any:
    body = raw if raw is not None else msgspec.json.encode(payload)
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-hub-signature-256": signature}
    return api.client.post("/hooks/meta", content=body, headers=headers)


def whatsapp(
    wamid: str, number: str, sender: str = "+15550001", receipt: str = "read"
) -> dict[str, Any]:
    """A `receipt` status for `wamid` and a message from `sender`, both to our `number`."""
    value = {
        "metadata": {"phone_number_id": number},
        "statuses": [{"id": wamid, "status": receipt, "timestamp": "1800000000"}],
        "messages": [{"from": sender, "id": "in-1", "timestamp": "1800000000", "type": "text"}],
    }
    entry = {"id": "WABA", "changes": [{"field": "messages", "value": value}]}
    return {"object": "whatsapp_business_account", "entry": [entry]}


def twilio_post(api: Api, params: list[tuple[str, str]], token: str, query: str = "") -> Any:
    signature = twilio_signature(token, f"http://testserver/hooks/twilio{query}", params)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-twilio-signature": signature,
    }
    return api.client.post(f"/hooks/twilio{query}", content=urlencode(params), headers=headers)


def email_post(api: Api, body: bytes, secret: str) -> Any:
    headers = sign_webhook(secret, "n-1", int(api.engine.clock.now()), body)
    return api.client.post(
        "/hooks/email/acme", content=body, headers={**headers, "content-type": "application/json"}
    )


# -- one workspace's secret, another workspace's messages ----------------------------------------


def test_a_meta_delivery_signed_for_one_workspace_changes_nothing_of_another(hooks: Api) -> None:
    before = state(hooks)
    r = meta_post(hooks, whatsapp("wamid.X", NUMBER["default"]), "meta-other")
    assert r.status_code == 200  # a genuine delivery for `other`: nothing of its own matched
    assert state(hooks) == before
    assert meta_post(hooks, whatsapp("wamid.X", NUMBER["default"]), "meta-default").is_success
    assert status(hooks, "wa-1") == "opened"
    windows = hooks.engine.read_sync(lambda c: c.execute("SELECT * FROM channel_windows"))
    assert [row[0] for row in windows] == ["default"]


def test_a_twilio_callback_signed_for_one_workspace_changes_nothing_of_another(
    hooks: Api,
) -> None:
    before = state(hooks)
    params = [("MessageSid", "SM123"), ("MessageStatus", "delivered")]
    assert twilio_post(hooks, params, "twilio-other").status_code == 200
    assert state(hooks) == before
    assert twilio_post(hooks, params, "twilio-default").status_code == 200
    assert status(hooks, "sms-1") == "delivered"


def test_an_email_notice_signed_for_one_workspace_changes_nothing_of_another(hooks: Api) -> None:
    before = state(hooks)
    notice = msgspec.json.encode({"type": "complaint", "email": "ada@example.com"})
    assert email_post(hooks, notice, EMAIL_SECRET["other"]).status_code == 200
    rows = hooks.engine.read_sync(lambda c: c.execute("SELECT * FROM channel_suppressions"))
    assert {row[0] for row in rows} == {"other"}
    assert state(hooks)[0] == before[0]  # default's message untouched


def test_an_email_notice_signed_with_a_secret_two_workspaces_share_reaches_both(
    hooks: Api, tmp_path: Path
) -> None:
    """One provider account sending for two workspaces signs with one secret: a complaint
    must suppress the address in each, not only in the first workspace that verifies."""
    shared = playbook("other").replace(EMAIL_SECRET["other"], EMAIL_SECRET["default"])
    (tmp_path / "shared.yaml").write_text(shared)
    hooks.engine.apply_playbook_file(str(tmp_path / "shared.yaml"))
    hooks.engine.refresh_playbooks()
    notice = msgspec.json.encode({"type": "complaint", "email": "ada@example.com"})
    assert email_post(hooks, notice, EMAIL_SECRET["default"]).status_code == 200
    rows = hooks.engine.read_sync(lambda c: c.execute("SELECT * FROM channel_suppressions"))
    assert sorted(row[0] for row in rows) == ["default", "other"]


def test_a_hard_bounce_after_a_soft_one_is_its_own_event(hooks: Api) -> None:
    """The soft bounce's `Email Bounced` (`permanent: false`) must not take the id of the hard
    one that follows for the same message: that one is what the journeys stage suppresses on."""
    for n, permanent in enumerate([False, False, True, True]):  # each delivered twice
        notice = {"type": "bounce", "message_id": "em-1", "reason": "5.2.2", "permanent": permanent}
        body = msgspec.json.encode(notice)
        headers = sign_webhook(
            EMAIL_SECRET["default"], f"n-{n}", int(hooks.engine.clock.now()), body
        )
        assert hooks.client.post("/hooks/email/acme", content=body, headers=headers).is_success

    def bounces(c: Any) -> list[Any]:
        rows = c.execute("SELECT body FROM events WHERE event = 'Email Bounced' ORDER BY seq")
        return [msgspec.json.decode(row[0])["properties"]["permanent"] for row in rows]

    assert hooks.engine.read_sync(bounces) == [False, True]
    assert status(hooks, "em-1") == "bounced"


def test_a_receipt_delivered_twice_is_recorded_once(hooks: Api) -> None:
    """Providers re-deliver a webhook whose answer they missed: its event is dropped by id, and
    its history line and its `matched` count with it."""
    notice = msgspec.json.encode({"type": "bounce", "message_id": "em-1", "reason": "5.1.1"})
    sms = [("MessageSid", "SM123"), ("MessageStatus", "delivered")]
    matched = []
    for _ in range(2):
        matched.append(email_post(hooks, notice, EMAIL_SECRET["default"]).json()["matched"])
        assert meta_post(hooks, whatsapp("wamid.X", NUMBER["default"]), "meta-default").is_success
        assert twilio_post(hooks, sms, "twilio-default").status_code == 200
    assert matched == [1, 0]
    history = hooks.engine.read_sync(
        lambda c: c.execute("SELECT message_id, status FROM message_transitions ORDER BY id")
    )
    assert sorted(map(tuple, history)) == [
        ("em-1", "bounced"),
        ("em-1", "sent"),
        ("sms-1", "delivered"),
        ("sms-1", "sent"),
        ("wa-1", "opened"),
        ("wa-1", "sent"),
    ]


def test_a_sent_receipt_delivered_twice_is_recorded_once(hooks: Api) -> None:
    """WhatsApp's and Twilio's `sent` status has no event whose id drops a re-delivery: each
    re-delivery added a history line. The first receipt is recorded, its repeats are not."""
    sent_wa = whatsapp("wamid.X", NUMBER["default"], receipt="sent")
    sent_sms = [("MessageSid", "SM123"), ("MessageStatus", "sent")]
    for _ in range(2):
        assert meta_post(hooks, sent_wa, "meta-default").is_success
        assert twilio_post(hooks, sent_sms, "twilio-default").status_code == 200
    history = hooks.engine.read_sync(
        lambda c: c.execute("SELECT message_id, status, reason FROM message_transitions")
    )
    assert sorted(map(tuple, history)) == [
        ("em-1", "sent", ""),
        ("sms-1", "sent", ""),
        ("sms-1", "sent", "sms reported sent"),
        ("wa-1", "sent", ""),
        ("wa-1", "sent", "whatsapp reported sent"),
    ]
    assert status(hooks, "wa-1") == status(hooks, "sms-1") == "sent"


def test_two_different_soft_bounces_are_both_recorded(hooks: Api) -> None:
    """Every soft bounce of a message took one event id, so a second one (another diagnostic,
    a later retry by the receiving server) was dropped as a re-delivery, history and all. The
    same bounce delivered again is still recorded once."""
    notices = [
        {"type": "bounce", "message_id": "em-1", "reason": "4.2.2 mailbox full"},
        {"type": "bounce", "message_id": "em-1", "reason": "4.4.7 delivery delayed"},
        {"type": "bounce", "message_id": "em-1", "reason": "4.2.2 mailbox full",
         "timestamp": 1_800_000_600},
    ]  # fmt: skip
    matched = []
    for n, notice in enumerate(notices * 2):  # each delivered twice
        notice = {**notice, "permanent": False}
        body = msgspec.json.encode(notice)
        headers = sign_webhook(
            EMAIL_SECRET["default"], f"n-{n}", int(hooks.engine.clock.now()), body
        )
        response = hooks.client.post("/hooks/email/acme", content=body, headers=headers)
        matched.append(response.json()["matched"])
    assert matched == [1, 1, 1, 0, 0, 0]

    def bounces(c: Any) -> list[Any]:
        rows = c.execute("SELECT body FROM events WHERE event = 'Email Bounced' ORDER BY seq")
        return [msgspec.json.decode(row[0])["properties"]["reason"] for row in rows]

    assert hooks.engine.read_sync(bounces) == [n["reason"] for n in notices]
    history = hooks.engine.read_sync(
        lambda c: c.execute(
            "SELECT reason FROM message_transitions WHERE status = 'deferred' ORDER BY id"
        )
    )
    assert [row[0] for row in history] == [f"soft bounce: {n['reason']}" for n in notices]
    assert status(hooks, "em-1") == "sent"  # a soft bounce does not end the message


@pytest.mark.parametrize("secret", ["", "meta-nobody", "meta-default "])
def test_a_wrong_meta_signature_is_a_401_and_changes_nothing(hooks: Api, secret: str) -> None:
    before = state(hooks)
    r = meta_post(hooks, whatsapp("wamid.X", NUMBER["default"]), secret)
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    assert state(hooks) == before


# -- signed but odd --------------------------------------------------------------------------


def test_nul_in_a_meta_receipt_is_skipped_not_a_500(hooks: Api) -> None:
    r = meta_post(hooks, whatsapp("wamid.\x00", NUMBER["default"], sender="+1\x00"), "meta-default")
    assert r.status_code == 200
    assert status(hooks, "wa-1") == "sent"
    # The rest of the delivery still counts: the provider would re-send all of it.
    payload = whatsapp("wamid.\x00", NUMBER["default"])
    assert meta_post(hooks, payload, "meta-default").status_code == 200
    assert hooks.engine.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM channel_windows")) == [
        (1,)
    ]


def test_nul_in_a_twilio_callback_is_skipped_not_a_500(hooks: Api) -> None:
    before = state(hooks)
    params = [("MessageSid", "SM1\x00"), ("MessageStatus", "delivered")]
    assert twilio_post(hooks, params, "twilio-default").status_code == 200
    assert state(hooks) == before


@pytest.mark.parametrize(
    "notice",
    [
        {"type": "bounce", "email": "ada\x00@example.com"},
        {"type": "complaint", "email": "ada@example.com", "message_id": "\x00"},
        [{"type": "complaint", "email": "zed\x00@example.com"}],
    ],
)
def test_nul_in_an_email_notice_is_skipped_not_a_500(hooks: Api, notice: Any) -> None:
    before = state(hooks)
    r = email_post(hooks, msgspec.json.encode(notice), EMAIL_SECRET["default"])
    assert (r.status_code, r.json()["receipts"]) == (200, 0)
    assert state(hooks) == before


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe", b"{"])
def test_a_signed_body_that_is_not_json_is_a_400(hooks: Api, body: bytes) -> None:
    before = state(hooks)
    r = meta_post(hooks, None, "meta-default", raw=body)
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    r = email_post(hooks, body, EMAIL_SECRET["default"])
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    assert state(hooks) == before


def test_a_signed_body_repeating_a_key_is_a_400_naming_it(hooks: Api) -> None:
    """Meta's parser or the email provider's may read the first of two values where ours read
    the last: the signature covers the bytes, not one reading of them."""
    before = state(hooks)
    receipt = msgspec.json.encode(whatsapp("wamid.X", NUMBER["default"]))
    repeated = receipt.replace(b'"status":"read"', b'"status":"sent","status":"read"')
    assert repeated != receipt
    r = meta_post(hooks, None, "meta-default", raw=repeated)
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    assert "'status'" in r.json()["message"]
    notice = (
        b'{"type":"delivered","message_id":"em-1","type":"complaint","email":"ada@example.com"}'
    )
    r = email_post(hooks, notice, EMAIL_SECRET["default"])
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    assert "'type'" in r.json()["message"]
    assert state(hooks) == before


def test_a_signed_twilio_callback_repeating_a_parameter_is_a_400_naming_it(hooks: Api) -> None:
    """Twilio signs the sorted parameters, both values of a repeated one included; we kept the
    last (`dict`), where the sender's reading may take the first: `delivered` was applied."""
    before = state(hooks)
    params = [("MessageSid", "SM123"), ("MessageStatus", "failed"), ("MessageStatus", "delivered")]
    r = twilio_post(hooks, params, "twilio-default")
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    assert "'MessageStatus'" in r.json()["message"]
    assert twilio_post(hooks, params, "twilio-wrong").status_code == 401  # the signature first
    # `ref` names the message, and the signature covers the URL with both.
    params = [("MessageSid", "SM123"), ("MessageStatus", "delivered")]
    r = twilio_post(hooks, params, "twilio-default", query="?ref=r1&ref=r2")
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    assert r.json()["message"].startswith("the URL's query repeats the parameter 'ref'")
    assert state(hooks) == before


@pytest.mark.parametrize("path", ["/hooks/meta", "/hooks/twilio", "/hooks/email/acme"])
def test_an_oversize_delivery_is_a_413(api: Api, path: str) -> None:
    r = api.client.post(path, content=b"x" * 1_000_001)
    assert (r.status_code, r.json()["code"]) == (413, "too_large")


def test_a_refused_hub_challenge_is_forbidden_not_unauthorized(api: Api) -> None:
    r = api.client.get("/hooks/meta", params={"hub.mode": "subscribe", "hub.challenge": "1"})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


# -- tracking links --------------------------------------------------------------------------


def test_a_link_never_redirects_anywhere_but_where_it_was_signed_for(api: Api) -> None:
    key = services(api.engine).keys()[0]
    click = sign(key, Token("c", "default", "m-1", "https://acme.test/pricing"))
    payload, _, mac = click.partition(".")
    evil = sign(key, Token("c", "default", "m-1", "https://evil.test/")).partition(".")[0]
    opened = sign(key, Token("o", "default", "m-1"))
    for token in [
        f"{evil}.{mac}",  # another URL under this signature
        opened,  # an open token used as a click
        payload,
        f"{payload}.",
        f"{payload}.{mac}x",
        "%00",
        "a" * 5000,
        "..%2F..%2Fhealthz",
    ]:
        r = api.client.get(f"/t/c/{token}", follow_redirects=False)
        assert r.status_code in (400, 404), token
        assert "location" not in r.headers, token
    r = api.client.get(f"/t/c/{click}", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "https://acme.test/pricing")


@pytest.mark.parametrize("timestamp", ["²", "١٨٠٠٠٠٠٠٠٠"])
def test_a_timestamp_in_other_digits_is_no_time_not_a_500(hooks: Api, timestamp: str) -> None:
    """`"²".isdigit()` is true and `int("²")` raises: the whole delivery was a 500, which the
    provider re-sends for days; "١٨٠٠٠٠٠٠٠٠" was read as a time."""
    payload = whatsapp("wamid.X", NUMBER["default"])
    value = payload["entry"][0]["changes"][0]["value"]
    value["statuses"][0]["timestamp"] = timestamp
    value["messages"][0]["timestamp"] = timestamp
    assert meta_post(hooks, payload, "meta-default").status_code == 200
    assert status(hooks, "wa-1") == "opened"  # the receipt counts, at the time it arrived
    # A message with no readable time opens no reply window.
    assert hooks.engine.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM channel_windows")) == [
        (0,)
    ]


@pytest.mark.parametrize(
    "created_at", ["0000-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z"]
)
def test_an_email_notice_at_no_real_time_is_recorded_not_a_500(hooks: Api, created_at: str) -> None:
    """Year 0 and month 13 matched the time's shape and raised ValueError out of `timegm`: the
    whole notice was a 500, re-sent by the provider for days."""
    notice = {"type": "delivered", "message_id": "em-1", "created_at": created_at}
    body = msgspec.json.encode(notice)
    headers = sign_webhook(EMAIL_SECRET["default"], "n-1", int(hooks.engine.clock.now()), body)
    r = hooks.client.post("/hooks/email/acme", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert status(hooks, "em-1") == "delivered"
