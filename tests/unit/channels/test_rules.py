"""Pure rules of the channels: the Instagram messaging window, the policy's decisions merged into
the message list, Google's error envelope, the SMTP URL's CA option, the rate-limit settings."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from leadloop.channels import instagram
from leadloop.channels.config import parse_channels
from leadloop.channels.email import parse_smtp_url
from leadloop.channels.model import Failed, TryLater
from leadloop.channels.providers import interpret
from leadloop.channels.records import merge_policy
from leadloop.errors import PlaybookError
from leadloop.playbook.load import parse_playbook
from leadloop.testing_fakes.messaging_base import google_error

HOUR = 3600.0


def test_instagram_window_24_hours_then_the_human_agent_tag_for_7_days() -> None:
    now = 1_000_000.0
    assert instagram.window_refusal(now - 23 * HOUR, now, "") == ("", None)
    reason, tag = instagram.window_refusal(now - 25 * HOUR, now, "")
    assert tag is None
    assert "outside the 24-hour Instagram messaging window" in reason
    assert "25.0 hours ago" in reason and "HUMAN_AGENT" in reason
    reason, _ = instagram.window_refusal(None, now, "")
    assert "never messaged" in reason
    assert instagram.window_refusal(now - 25 * HOUR, now, "HUMAN_AGENT") == ("", "HUMAN_AGENT")
    assert instagram.window_refusal(now - 1 * HOUR, now, "HUMAN_AGENT") == ("", None)
    reason, _ = instagram.window_refusal(now - 8 * 24 * HOUR, now, "HUMAN_AGENT")
    assert "7-day window of the HUMAN_AGENT message tag" in reason
    reason, _ = instagram.window_refusal(None, now, "HUMAN_AGENT")
    assert reason


def test_tagged_instagram_payloads() -> None:
    parts = instagram.payloads("IGSID", "hi", None, "", "HUMAN_AGENT")
    assert parts == [
        {
            "recipient": {"id": "IGSID"},
            "messaging_type": "MESSAGE_TAG",
            "tag": "HUMAN_AGENT",
            "message": {"text": "hi"},
        }
    ]
    assert instagram.payloads("IGSID", "hi", None, "") == [
        {"recipient": {"id": "IGSID"}, "message": {"text": "hi"}}
    ]


def _record(message_id: str, created: float, status: str = "sent") -> dict[str, Any]:
    return {
        "message_id": message_id,
        "channel": "email",
        "template": "welcome",
        "journey": "j",
        "step": "s",
        "status": status,
        "reason": "accepted by email",
        "provider_id": None,
        "sent_at": created,
        "created_at": created,
        "updated_at": created,
        "history": [
            {"status": "queued", "reason": "queued for sending", "at": created},
            {"status": status, "reason": "accepted by email", "at": created},
        ],
    }


def _send(
    message_id: str, at: float, outcome: str, reason: str, until: float | None = None
) -> tuple[Any, ...]:
    # message_id, journey_id, step, requested_channel, channel, template, at, outcome, reason,
    # until: the columns `policy_rows` reads from the journeys' `sends` table.
    channel = None if outcome == "suppressed" else "email"
    return (message_id, "j", "s", "email", channel, "welcome", at, outcome, reason, until)


def test_policy_decisions_are_merged_into_the_message_list() -> None:
    items = [_record("m-sent", 200.0)]
    sends = [
        _send("m-sent", 100.0, "deferred", "quiet hours until 09:00", 199.0),
        _send("m-sent", 199.0, "queued", ""),
        _send("m-deferred", 150.0, "deferred", "frequency cap: 2 per day", 86_400.0),
        _send("m-suppressed", 300.0, "suppressed", "unsubscribed from email"),
        _send("m-waiting", 400.0, "rerouted", "email disabled; sent by sms"),
    ]
    merged = merge_policy(items, sends, 10)
    assert [m["message_id"] for m in merged] == [
        "m-deferred",
        "m-sent",
        "m-suppressed",
        "m-waiting",
    ]
    deferred, sent, suppressed, waiting = merged
    assert (deferred["status"], deferred["reason"]) == ("deferred", "frequency cap: 2 per day")
    assert deferred["until"] == 86_400.0 and deferred["provider_id"] is None
    assert deferred["history"] == [
        {"status": "deferred", "reason": "frequency cap: 2 per day", "at": 150.0}
    ]
    # The record keeps its own state; the deferral comes first in its history.
    assert sent["status"] == "sent" and sent["until"] is None
    assert [h["status"] for h in sent["history"]] == ["deferred", "queued", "sent"]
    assert sent["history"][0]["reason"] == "quiet hours until 09:00"
    assert (suppressed["status"], suppressed["reason"]) == (
        "suppressed",
        "unsubscribed from email",
    )
    assert suppressed["channel"] == "email"  # the requested channel when none was chosen
    assert (waiting["status"], waiting["reason"]) == ("queued", "email disabled; sent by sms")
    assert [m["message_id"] for m in merge_policy(items, sends, 2)] == ["m-deferred", "m-sent"]


def test_googles_error_envelope_is_the_recorded_reason() -> None:
    body = google_error(
        400, "The user list is not valid.", "INVALID_USER_LIST_ID", "destinations[0].x"
    )
    response = httpx2.Response(400, content=json.dumps(body).encode())
    result = interpret(response, 0.0)
    assert isinstance(result, Failed)
    assert result.reason == (
        "HTTP 400: (INVALID_ARGUMENT INVALID_USER_LIST_ID) The user list is not valid. "
        "[destinations[0].x: The user list is not valid.]"
    )
    throttled = httpx2.Response(
        429, content=json.dumps(google_error(429, "quota", "RESOURCE_EXHAUSTED")).encode()
    )
    assert isinstance(interpret(throttled, 0.0), TryLater)


def test_smtp_url_ca_file_trusts_that_bundle_only() -> None:
    target = parse_smtp_url("smtps://u:p@mail.test:465?ca_file=/etc/ca.pem")
    assert (target.implicit_tls, target.ca_file, target.validate_certs) == (
        True,
        "/etc/ca.pem",
        True,
    )
    assert parse_smtp_url("smtp://mail.test").tls_context() is None


def _section(text: str) -> Any:
    return parse_channels(parse_playbook(text, "pb.yaml", {}).sections.get("channels"))


def test_rate_limits_and_message_tag_settings() -> None:
    defaults = _section("version: 1\nchannels:\n  public_url: http://x.test\n")
    assert defaults.whatsapp.rate_limit == 80.0
    assert defaults.sms.rate_limit == 1.0
    assert defaults.instagram.rate_limit == 100.0
    assert defaults.instagram.message_tag == ""
    configured = _section(
        "version: 1\nchannels:\n  sms:\n    rate_limit: 3\n  whatsapp:\n    rate_limit: '0'\n"
        "  instagram:\n    message_tag: HUMAN_AGENT\n"
    )
    assert configured.sms.rate_limit == 3.0
    assert configured.whatsapp.rate_limit == 0.0
    assert configured.instagram.message_tag == "HUMAN_AGENT"
    with pytest.raises(PlaybookError) as caught:
        _section("version: 1\nchannels:\n  sms:\n    rate_limit: fast\n")
    assert caught.value.field == "channels.sms.rate_limit"
    with pytest.raises(PlaybookError) as caught:
        _section("version: 1\nchannels:\n  instagram:\n    message_tag: ACCOUNT_UPDATE\n")
    assert "HUMAN_AGENT" in caught.value.message
