"""The fake's checks of Meta's messaging and audience APIs: WhatsApp Cloud API messages,
Instagram messaging (Send API) and Marketing API Custom Audience users. Each check names the doc
it follows and answers with the Graph API error envelope when it fails.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from leadloop.testing_fakes.base import HEX64
from leadloop.testing_fakes.messaging_base import (
    FakeProvider,
    Refused,
    Response,
    read_json,
    require_bearer,
)

if TYPE_CHECKING:
    from leadloop.testing_fakes.messaging import FakeMessagingServer

WA_DIGITS = re.compile(r"[1-9][0-9]{6,14}")  # ASCII: `\d` would take any script's digits


def _graph_send(
    p: FakeProvider, method: str, headers: dict[str, str], raw: bytes, token: str
) -> Any:
    """The checks every Graph send makes first, in this order: POST, bearer token, JSON body."""
    if method != "POST":
        raise Refused(405, p.error_body(405, "method not allowed", 100))
    require_bearer(p, headers, token)
    return read_json(p, headers, raw)


def check_whatsapp(
    fake: FakeMessagingServer, method: str, path: str, headers: dict[str, str], raw: bytes
) -> Response:
    p = fake.whatsapp
    # WhatsApp Cloud API reference, "Messages": POST /{Version}/{Phone-Number-ID}/messages.
    body = _graph_send(p, method, headers, raw, fake.whatsapp_token)
    invalid = Refused(400, p.error_body(400, "(#100) Invalid parameter", 100))
    if body.get("messaging_product") != "whatsapp" or not isinstance(body.get("to"), str):
        raise invalid
    to = body["to"].lstrip("+")
    if not WA_DIGITS.fullmatch(to):
        raise invalid
    kind = body.get("type", "text")
    content = body.get(kind)
    if kind == "text":
        if not isinstance(content, dict) or not isinstance(content.get("body"), str):
            raise invalid
    elif kind == "template":
        # "Template messages": template.name and template.language.code are required.
        if (
            not isinstance(content, dict)
            or not content.get("name")
            or not isinstance(content.get("language"), dict)
            or not content["language"].get("code")
        ):
            raise invalid
    elif kind in ("image", "video", "audio", "document", "sticker"):
        # "Media messages": a media object with `id` or `link`.
        if not isinstance(content, dict) or not (content.get("link") or content.get("id")):
            raise invalid
    else:
        raise invalid
    if kind != "template" and to not in fake.open_windows:
        # Cloud API error 131047 "Re-engagement message": more than 24 hours since the
        # customer last replied; only a template message may be sent.
        raise Refused(
            400,
            p.error_body(
                400,
                "Re-engagement message: more than 24 hours have passed since the recipient "
                "last replied",
                131047,
            ),
        )
    wamid = f"wamid.{fake.next_id()}"
    p.accepted.append({**body, "_id": wamid})
    if p.on_accept is not None:
        p.on_accept(p.accepted[-1])
    return (
        200,
        {},
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": to}],
            "messages": [{"id": wamid}],
        },
    )


def check_instagram(
    fake: FakeMessagingServer, method: str, path: str, headers: dict[str, str], raw: bytes
) -> Response:
    p = fake.instagram
    # Instagram API with Instagram Login, "Send API": POST /{version}/{IG ID or me}/messages,
    # {"recipient": {"id": IGSID}, "message": {"text"} | {"attachment": {type, payload.url}}}.
    body = _graph_send(p, method, headers, raw, fake.instagram_token)
    invalid = Refused(400, p.error_body(400, "(#100) Invalid parameter", 100))
    recipient = body.get("recipient")
    message = body.get("message")
    if not isinstance(recipient, dict) or not recipient.get("id") or not isinstance(message, dict):
        raise invalid
    if "text" in message:
        if not isinstance(message["text"], str) or len(message["text"].encode()) > 1000:
            raise invalid
    else:
        attachment = message.get("attachment")
        if (
            not isinstance(attachment, dict)
            or attachment.get("type") not in ("image", "video", "audio", "file")
            or not isinstance(attachment.get("payload"), dict)
            or not attachment["payload"].get("url")
        ):
            raise invalid
    tag = body.get("tag")
    # "Send API", message tags: `messaging_type: MESSAGE_TAG` with `tag: HUMAN_AGENT`.
    if tag is not None and (body.get("messaging_type") != "MESSAGE_TAG" or tag != "HUMAN_AGENT"):
        raise invalid
    if tag is None and recipient["id"] not in fake.open_instagram_windows:
        # Outside the 24-hour messaging window: Graph error 10, subcode 2534022.
        raise Refused(
            400,
            {
                "error": {
                    "message": "(#10) This message is sent outside of allowed window.",
                    "type": "OAuthException",
                    "code": 10,
                    "error_subcode": 2534022,
                    "fbtrace_id": "AbCdEfGh",
                }
            },
        )
    mid = f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE{fake.next_id()}"
    p.accepted.append({**body, "_id": mid})
    return 200, {}, {"recipient_id": recipient["id"], "message_id": mid}


def check_audience(
    fake: FakeMessagingServer, method: str, path: str, headers: dict[str, str], raw: bytes
) -> Response:
    p = fake.audiences
    # Marketing API "Custom Audience users": POST (add) / DELETE (remove)
    # /{version}/{custom_audience_id}/users with payload {schema, data}; identifiers
    # SHA-256 hashed after normalisation ("Customer file custom audiences: hashing").
    if method not in ("POST", "DELETE"):
        raise Refused(405, p.error_body(405, "method not allowed", 100))
    require_bearer(p, headers, fake.audience_token)
    audience = path.rstrip("/").split("/")[-2]
    if audience != fake.audience_id:
        raise Refused(400, p.error_body(400, "(#100) Unsupported post request", 100))
    body = read_json(p, headers, raw)
    payload = body.get("payload")
    invalid = Refused(400, p.error_body(400, "(#100) Invalid payload", 100))
    if not isinstance(payload, dict):
        raise invalid
    schema = payload.get("schema")
    data = payload.get("data")
    known = {
        "EMAIL",
        "PHONE",
        "FN",
        "LN",
        "CT",
        "ST",
        "ZIP",
        "COUNTRY",
        "DOBY",
        "GEN",
        "EXTERN_ID",
    }
    if not isinstance(schema, list) or not schema or not set(schema) <= known:
        raise invalid
    if not isinstance(data, list) or not data:
        raise invalid
    for row in data:
        if not isinstance(row, list) or len(row) != len(schema):
            raise invalid
        for value in row:
            if value and (not isinstance(value, str) or not HEX64.fullmatch(value)):
                # Raw PII: the fake refuses anything but lowercase SHA-256 hex.
                raise Refused(400, p.error_body(400, "(#2650) Data must be hashed", 2650))
        key = (schema[0], row[0])
        if method == "POST":
            fake.audience_members.add(key)
        else:
            fake.audience_members.discard(key)
    p.accepted.append({"method": method, **payload})
    return (
        200,
        {},
        {
            "audience_id": audience,
            "session_id": str(fake.next_id()),
            "num_received": len(data),
            "num_invalid_entries": 0,
            "invalid_entry_samples": {},
        },
    )
