"""The fake's check of Google Customer Match uploads (Data Manager API, `audienceMembers.ingest`
and `.remove`), and Google's own normalisation of the identifiers a test names.

Data Manager API reference, "audienceMembers.ingest" / "audienceMembers.remove" (REST v1),
"Destination", "AudienceMember", "UserData", "Encoding", "ErrorReason"; "Format user data"
(devguides/concepts/formatting) for the normalisation; standard Google API errors
(`google.rpc.Status`, `messaging_base.google_error`) for the envelope.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING

from leadloop.testing_fakes.base import HEX64
from leadloop.testing_fakes.messaging_base import Refused, Response

if TYPE_CHECKING:
    from leadloop.testing_fakes.messaging import FakeMessagingServer

GOOGLE_ACCOUNT_TYPES = {"GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", 1, 2, 3}
GOOGLE_CONSENT = {"CONSENT_GRANTED", "CONSENT_DENIED", 1, 2}
INGEST_FIELDS = frozenset(
    {
        "destinations",
        "audienceMembers",
        "consent",
        "validateOnly",
        "encoding",
        "encryptionInfo",
        "termsOfService",
    }
)
REMOVE_FIELDS = frozenset(
    {"destinations", "audienceMembers", "validateOnly", "encoding", "encryptionInfo"}
)
_GMAIL = ("gmail.com", "googlemail.com")


def google_email(email: str) -> str:
    """ "Format user data", email: remove all whitespace (leading, trailing, intermediate),
    lowercase; for gmail.com and googlemail.com, drop every `.` of the local part and a `+`
    with everything after it."""
    compact = re.sub(r"\s+", "", email).lower()
    local, _, domain = compact.rpartition("@")
    if domain in _GMAIL:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"


def google_phone(phone: str) -> str:
    """ "Format user data", phone: E.164, `+` and country code included. The caller gives the
    number with its country code; only formatting characters are removed here."""
    digits = re.sub(r"\D", "", phone)
    return f"+{digits}"


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_customer_match(
    fake: FakeMessagingServer, method: str, path: str, headers: dict[str, str], raw: bytes
) -> Response:
    p = fake.google
    add = path.endswith(":ingest")

    def bad(message: str, reason: str = "INVALID_ARGUMENT", field_path: str = "") -> Refused:
        return Refused(400, p.error_body(400, message, 3, reason, field_path))

    # REST reference: `POST https://datamanager.googleapis.com/v1/audienceMembers:ingest`
    # (and `:remove`); OAuth 2.0 bearer token with the `.../auth/datamanager` scope.
    if method != "POST":
        raise Refused(405, p.error_body(405, "method not allowed", 3))
    if headers.get("authorization") != f"Bearer {fake.google_token}":
        raise Refused(
            401,
            p.error_body(
                401, "Request had invalid authentication credentials.", 3, "UNAUTHENTICATED"
            ),
        )
    if not headers.get("content-type", "").startswith("application/json"):
        raise bad("expected application/json")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise bad("Invalid JSON payload received.") from exc
    if not isinstance(body, dict):
        raise bad("Invalid JSON payload received.")
    # Request body of each method: unknown names are refused by the JSON mapping (remove
    # has no `consent` nor `termsOfService`).
    allowed = INGEST_FIELDS if add else REMOVE_FIELDS
    for name in body:
        if name not in allowed:
            raise bad(f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.')
    # "Destination": operatingAccount {accountType, accountId} and productDestinationId
    # (the Customer Match user list id); at most 10 (TOO_MANY_DESTINATIONS).
    destinations = body.get("destinations")
    if not isinstance(destinations, list) or not destinations:
        raise bad("destinations is required", "REQUIRED_FIELD_MISSING", "destinations")
    if len(destinations) > 10:
        raise bad("too many destinations", "TOO_MANY_DESTINATIONS", "destinations")
    for d, destination in enumerate(destinations):
        where = f"destinations[{d}]"
        account = destination.get("operatingAccount") if isinstance(destination, dict) else None
        if (
            not isinstance(account, dict)
            or account.get("accountType") not in GOOGLE_ACCOUNT_TYPES
            or not str(account.get("accountId") or "").isdigit()
        ):
            raise bad(
                "invalid operating account", "INVALID_DESTINATION", f"{where}.operatingAccount"
            )
        if account["accountId"] != fake.google_account:
            raise Refused(
                403,
                p.error_body(
                    403,
                    "The caller does not have permission",
                    3,
                    "PERMISSION_DENIED",
                    f"{where}.operatingAccount.accountId",
                ),
            )
        if str(destination.get("productDestinationId") or "") != fake.google_user_list:
            raise bad(
                "The user list is not valid.",
                "INVALID_USER_LIST_ID",
                f"{where}.productDestinationId",
            )
    # "AudienceMember": 1-10,000 per request (TOO_MANY_AUDIENCE_MEMBERS); "UserData":
    # 1-10 userIdentifiers (TOO_MANY_USER_IDENTIFIERS), each one of emailAddress,
    # phoneNumber or address.
    members = body.get("audienceMembers")
    if not isinstance(members, list) or not members:
        raise bad("audienceMembers is required", "REQUIRED_FIELD_MISSING", "audienceMembers")
    if len(members) > 10_000:
        raise bad("too many audience members", "TOO_MANY_AUDIENCE_MEMBERS", "audienceMembers")
    # "Encoding": required for UserData uploads; HEX or BASE64 of the SHA-256 digest. This
    # fake takes HEX only, lower case (what the engine sends).
    if body.get("encoding") not in ("HEX", 1):
        raise bad("encoding must be HEX", "INVALID_ENUM_VALUE", "encoding")
    if add:
        # Customer Match terms ("audienceMembers.ingest": termsOfService) and consent
        # (request-level `consent`, or each member's; EU user consent policy).
        terms = body.get("termsOfService") or {}
        if terms.get("customerMatchTermsOfServiceStatus") not in ("ACCEPTED", 1):
            raise bad(
                "The Customer Match terms of service have not been accepted.",
                "TERMS_AND_CONDITIONS_NOT_SIGNED",
                "termsOfService",
            )
    hashes: list[str] = []
    for m, member in enumerate(members):
        where = f"audienceMembers[{m}]"
        if not isinstance(member, dict):
            raise bad("invalid audience member", "INVALID_AUDIENCE_MEMBER", where)
        consent = member.get("consent") or body.get("consent") or {}
        for name, value in consent.items():
            if name not in ("adUserData", "adPersonalization") or value not in GOOGLE_CONSENT:
                raise bad("invalid consent", "INVALID_ENUM_VALUE", f"{where}.consent.{name}")
        if add and consent.get("adUserData") not in ("CONSENT_GRANTED", 1):
            raise bad(
                "consent for ad user data is required", "INVALID_ARGUMENT", f"{where}.consent"
            )
        identifiers = (member.get("userData") or {}).get("userIdentifiers")
        if not isinstance(identifiers, list) or not identifiers:
            raise bad("userIdentifiers is required", "REQUIRED_FIELD_MISSING", f"{where}.userData")
        if len(identifiers) > 10:
            raise bad("too many identifiers", "TOO_MANY_USER_IDENTIFIERS", f"{where}.userData")
        for i, identifier in enumerate(identifiers):
            spot = f"{where}.userData.userIdentifiers[{i}]"
            keys = set(identifier) if isinstance(identifier, dict) else set()
            if len(keys) != 1 or not keys <= {"emailAddress", "phoneNumber", "address"}:
                raise bad("exactly one identifier per entry", "INVALID_FORMAT", spot)
            (key,) = keys
            if key == "address":
                continue
            value = identifier[key]
            if not isinstance(value, str) or not HEX64.fullmatch(value):
                # Raw PII or a bad digest: refused, never stored.
                raise bad(
                    "The HEX encoded value is malformed.",
                    "INVALID_HEX_ENCODING",
                    f"{spot}.{key}",
                )
            hashes.append(value)
    if not body.get("validateOnly"):
        for value in hashes:
            label = fake.google_people.get(value)
            if label is None:
                fake.google_unmatched.append(value)
            elif add:
                fake.google_members.add(label)
            else:
                fake.google_members.discard(label)
    request_id = f"fake-dm-{fake.next_id()}"
    p.accepted.append({"action": "ingest" if add else "remove", **body, "_id": request_id})
    return 200, {}, {"requestId": request_id}
