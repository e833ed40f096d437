"""The fake's check of Twilio's Messages resource (SMS), answering with Twilio's REST API error
envelope when it fails."""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from leadloop.testing_fakes.messaging_base import Refused, Response

if TYPE_CHECKING:
    from leadloop.testing_fakes.messaging import FakeMessagingServer

E164 = re.compile(r"\+[1-9][0-9]{6,14}")  # ASCII: `\d` would take any script's digits


def check_twilio(
    fake: FakeMessagingServer, method: str, path: str, headers: dict[str, str], raw: bytes
) -> Response:
    p = fake.twilio
    # Twilio "Messages resource", create: POST /2010-04-01/Accounts/{AccountSid}/Messages.json,
    # HTTP Basic auth (Account SID : Auth Token), application/x-www-form-urlencoded.
    if method != "POST":
        raise Refused(405, p.error_body(405, "method not allowed", 20004))
    expected = base64.b64encode(f"{fake.twilio_sid}:{fake.twilio_token}".encode()).decode()
    if (
        headers.get("authorization") != f"Basic {expected}"
        or f"/Accounts/{fake.twilio_sid}/" not in path
    ):
        raise Refused(401, p.error_body(401, "Authenticate", 20003))
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise Refused(400, p.error_body(400, "expected a form", 20001))
    form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
    if not form.get("Body") and not form.get("MediaUrl"):
        raise Refused(400, p.error_body(400, "A 'Body' or 'MediaUrl' is required", 21602))
    if not E164.fullmatch(form.get("To", "")):
        to = form.get("To", "")
        raise Refused(
            400, p.error_body(400, f"The 'To' number {to} is not a valid phone number.", 21211)
        )
    if not form.get("From") and not form.get("MessagingServiceSid"):
        raise Refused(400, p.error_body(400, "A 'From' phone number is required.", 21603))
    if len(form.get("Body", "")) > 1600:
        raise Refused(
            400,
            p.error_body(
                400, "The concatenated message body exceeds the 1600 character limit.", 21617
            ),
        )
    sid = f"SM{fake.next_id():032x}"
    p.accepted.append({**form, "_id": sid})
    if p.on_accept is not None:
        p.on_accept(p.accepted[-1])
    return (
        201,
        {},
        {
            "sid": sid,
            "account_sid": fake.twilio_sid,
            "to": form["To"],
            "from": form.get("From"),
            "body": form.get("Body", ""),
            "status": "queued",
            "num_segments": "1",
        },
    )
