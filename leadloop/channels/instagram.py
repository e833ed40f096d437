"""Instagram messaging (Instagram API with Instagram Login, "Send API"):
`POST {api_base}/{version}/{account id or me}/messages`, bearer token, JSON
`{"recipient": {"id": IGSID}, "message": {"text": …}}` or an attachment by URL. The answer is
`{"recipient_id", "message_id"}`; `message_id` comes back in read receipts."""

from __future__ import annotations

from typing import Any

import httpx2

from leadloop.channels.config import InstagramSettings, Media
from leadloop.channels.model import SendResult
from leadloop.channels.providers import post


def payloads(igsid: str, text: str, media: Media | None, link: str) -> list[dict[str, Any]]:
    """One request per part: Instagram takes text or one attachment per message."""
    out: list[dict[str, Any]] = []
    if media is not None:
        kind = "file" if media.type == "document" else media.type
        out.append(
            {
                "recipient": {"id": igsid},
                "message": {"attachment": {"type": kind, "payload": {"url": link}}},
            }
        )
    if text:
        out.append({"recipient": {"id": igsid}, "message": {"text": text}})
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
