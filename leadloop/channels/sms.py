"""SMS through Twilio's Messages API: `POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json`,
HTTP Basic auth (account SID, auth token), form-encoded `To`, `From`, `Body`, optional `MediaUrl`
and `StatusCallback` (Twilio "Messages resource: create"). The answer's `sid` comes back in the
status callbacks (`/hooks/twilio`)."""

from __future__ import annotations

from typing import Any

import httpx2

from leadloop.channels.model import SendResult
from leadloop.channels.providers import post
from leadloop.channels.settings import SmsSettings


def form(
    settings: SmsSettings, to: str, body: str, media_url: str, callback: str
) -> dict[str, str]:
    fields = {"To": to, "From": settings.sender, "Body": body}
    if media_url:
        fields["MediaUrl"] = media_url
    if callback:
        fields["StatusCallback"] = callback
    return fields


def _sid(body: Any) -> str:
    return str(body.get("sid", "")) if isinstance(body, dict) else ""


def send(
    client: httpx2.Client, settings: SmsSettings, fields: dict[str, str], now: float
) -> SendResult:
    url = f"{settings.api_base}/2010-04-01/Accounts/{settings.account_sid}/Messages.json"
    return post(
        client,
        "POST",
        url,
        now,
        data=fields,
        auth=(settings.account_sid, settings.auth_token),
        read_id=_sid,
    )
