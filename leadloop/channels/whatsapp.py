"""WhatsApp Cloud API: `POST {api_base}/{version}/{phone-number-id}/messages`, bearer token.

Inside the 24-hour customer service window (the person wrote to us within the last 24 hours) a
free-form message may go: text, or media by link (a video, an image…) with the text as caption.
Outside it, only an approved template message may (WhatsApp Cloud API "Send messages";
"Customer service windows"); without one configured the message fails with that reason.
"""

from __future__ import annotations

from typing import Any

import httpx2

from leadloop.channels.model import Failed, SendResult
from leadloop.channels.providers import post
from leadloop.channels.settings import Media, WhatsAppSettings
from leadloop.digits import ascii_digits

SERVICE_WINDOW = 24 * 3600.0
CAPTIONED = frozenset({"image", "video", "document"})


def in_service_window(last_inbound: float | None, now: float) -> bool:
    return last_inbound is not None and 0 <= now - last_inbound < SERVICE_WINDOW


def recipient(phone: str) -> str:
    """The Cloud API takes the number with its country code, ASCII digits only; "" (which
    the API refuses) for a number whose digits mix scripts (`ascii_digits`)."""
    return "".join(ch for ch in ascii_digits(phone) or "" if "0" <= ch <= "9")


def _base(to: str, reference: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient(to),
    }
    if reference and len(reference) <= 512:
        # Echoed in every status webhook of the message ("Messages": at most 512 characters).
        base["biz_opaque_callback_data"] = reference
    return base


def free_form(
    to: str, text: str, media: Media | None, link: str, caption: str, reference: str = ""
) -> dict[str, Any]:
    base = _base(to, reference)
    if media is not None:
        kind = "document" if media.type == "file" else media.type
        content: dict[str, Any] = {"link": link}
        caption = caption or text
        if caption and kind in CAPTIONED:
            content["caption"] = caption
        return {**base, "type": kind, kind: content}
    return {**base, "type": "text", "text": {"preview_url": True, "body": text}}


def template_message(
    to: str, name: str, language: str, params: list[str], reference: str = ""
) -> dict[str, Any]:
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if params:
        template["components"] = [
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}
        ]
    return {**_base(to, reference), "type": "template", "template": template}


def _message_id(body: Any) -> str:
    if isinstance(body, dict):
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            return str(messages[0].get("id", ""))
    return ""


def send(
    client: httpx2.Client, settings: WhatsAppSettings, payload: dict[str, Any], now: float
) -> SendResult:
    if not payload.get("to"):
        return Failed("no WhatsApp number")
    url = f"{settings.api_base}/{settings.api_version}/{settings.phone_number_id}/messages"
    return post(
        client,
        "POST",
        url,
        now,
        json=payload,
        headers={"authorization": f"Bearer {settings.token}"},
        read_id=_message_id,
    )
