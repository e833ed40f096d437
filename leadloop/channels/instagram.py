"""Instagram messaging (Instagram API with Instagram Login, "Send API"):
`POST {api_base}/{version}/{account id or me}/messages`, bearer token, JSON
`{"recipient": {"id": IGSID}, "message": {"text": …}}` or an attachment by URL. The answer is
`{"recipient_id", "message_id"}`; `message_id` comes back in read receipts.

The messaging window (Instagram Platform "Send API", "Messaging window"): a business may answer
only within 24 hours of the person's last message to it (the time comes from inbound messages on
`/hooks/meta`, kept in `channel_windows`). With the `HUMAN_AGENT` tag
(`"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"`) a human agent may reply within 7 days.
Outside both, the message is refused before any request, with the reason."""

from __future__ import annotations

from typing import Any

import httpx2

from leadloop.channels.model import SendResult
from leadloop.channels.providers import post
from leadloop.channels.settings import InstagramSettings, Media

MESSAGING_WINDOW = 24 * 3600.0
TAG_WINDOWS = {"HUMAN_AGENT": 7 * 24 * 3600.0}
"""How long after the person's last message each message tag may be used."""


def window_refusal(last_inbound: float | None, now: float, tag: str) -> tuple[str, str | None]:
    """("", None) inside the 24-hour window; ("", tag) outside it but inside the tag's window;
    (reason, None) when the message may not be sent."""
    age = None if last_inbound is None else now - last_inbound
    if age is not None and 0 <= age < MESSAGING_WINDOW:
        return "", None
    seen = (
        "the person has never messaged this account"
        if age is None
        else f"the person's last message was {age / 3600:.1f} hours ago"
    )
    if not tag:
        return (
            f"outside the 24-hour Instagram messaging window ({seen}); set "
            "channels.instagram.message_tag: HUMAN_AGENT to let a human agent reply within 7 days",
            None,
        )
    limit = TAG_WINDOWS.get(tag, MESSAGING_WINDOW)
    if age is not None and 0 <= age < limit:
        return "", tag
    return f"outside the {limit / 86400:g}-day window of the {tag} message tag ({seen})", None


def payloads(
    igsid: str, text: str, media: Media | None, link: str, tag: str | None = None
) -> list[dict[str, Any]]:
    """One request per part: Instagram takes text or one attachment per message."""
    base: dict[str, Any] = {"recipient": {"id": igsid}}
    if tag:
        base.update(messaging_type="MESSAGE_TAG", tag=tag)
    out: list[dict[str, Any]] = []
    if media is not None:
        kind = "file" if media.type == "document" else media.type
        out.append({**base, "message": {"attachment": {"type": kind, "payload": {"url": link}}}})
    if text:
        out.append({**base, "message": {"text": text}})
    return out


def _message_id(body: Any) -> str:
    return str(body.get("message_id", "")) if isinstance(body, dict) else ""


def send(
    client: httpx2.Client, settings: InstagramSettings, payload: dict[str, Any], now: float
) -> SendResult:
    url = f"{settings.api_base}/{settings.api_version}/{settings.account_id}/messages"
    return post(
        client,
        "POST",
        url,
        now,
        json=payload,
        headers={"authorization": f"Bearer {settings.token}"},
        read_id=_message_id,
    )
