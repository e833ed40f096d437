"""Ad audiences: add or remove one profile, identified only by normalised SHA-256 hashes.

* Meta Custom Audiences (Marketing API "Custom Audiences: adding and removing users"):
  `POST` (add) or `DELETE` (remove) `{api_base}/{version}/{audience_id}/users` with
  `payload = {"schema": ["EMAIL", "PHONE"], "data": [[sha256(email), sha256(phone)]]}`; Meta's
  normalisation (lower-cased email; phone as digits with country code) from
  `conversions.normalize`.
* Google Customer Match through the Data Manager API: `POST {api_base}/v1/audienceMembers:ingest`
  or `:remove` with the destination (operating account, user list id as
  `productDestinationId`), `encoding: HEX` and Google's normalisation (gmail dots and `+tags`
  removed; phone in E.164 with `+`).

Raw identifiers never leave: only the hashes are in the request.
"""

from __future__ import annotations

from typing import Any

import httpx2

from leadloop.channels.model import Failed, SendResult
from leadloop.channels.providers import post
from leadloop.channels.settings import AudienceSettings
from leadloop.conversions.normalize import (
    as_identity_email,
    normalize_email_google,
    normalize_email_meta,
    normalize_phone_google,
    normalize_phone_meta,
    sha256_hex,
)


def _hash(value: str | None) -> str:
    return sha256_hex(value) if value else ""


def meta_payload(email: str | None, phone: str | None, region: str | None) -> dict[str, Any] | None:
    # The profile's trait as typed: in the identity graph's form first, as the conversions
    # stage hashes it, or a member is another person than the buyer its conversions name.
    em = _hash(normalize_email_meta(as_identity_email(email))) if email else ""
    ph = _hash(normalize_phone_meta(phone, region)) if phone else ""
    if not em and not ph:
        return None
    return {"payload": {"schema": ["EMAIL", "PHONE"], "data": [[em, ph]]}}


def google_body(
    settings: AudienceSettings, email: str | None, phone: str | None, region: str | None, add: bool
) -> dict[str, Any] | None:
    identifiers: list[dict[str, str]] = []
    if email and (em := normalize_email_google(as_identity_email(email))):
        identifiers.append({"emailAddress": sha256_hex(em)})
    if phone and (ph := normalize_phone_google(phone, region)):
        identifiers.append({"phoneNumber": sha256_hex(ph)})
    if not identifiers:
        return None
    member: dict[str, Any] = {"userData": {"userIdentifiers": identifiers}}
    body: dict[str, Any] = {
        "destinations": [
            {
                "operatingAccount": {
                    "accountType": "GOOGLE_ADS",
                    "accountId": settings.operating_account,
                },
                "productDestinationId": settings.audience_id,
            }
        ],
        "audienceMembers": [member],
        "encoding": "HEX",
    }
    if add:
        member["consent"] = {
            "adUserData": "CONSENT_GRANTED",
            "adPersonalization": "CONSENT_GRANTED",
        }
        body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    return body


def send(
    client: httpx2.Client,
    settings: AudienceSettings,
    add: bool,
    email: str | None,
    phone: str | None,
    now: float,
) -> SendResult:
    region = settings.default_region
    auth = {"authorization": f"Bearer {settings.token}"}
    if settings.type == "meta":
        payload = meta_payload(email, phone, region)
        if payload is None:
            return Failed("no email or phone to match the profile on")
        url = f"{settings.api_base}/{settings.api_version}/{settings.audience_id}/users"
        return post(client, "POST" if add else "DELETE", url, now, json=payload, headers=auth)
    body = google_body(settings, email, phone, region, add)
    if body is None:
        return Failed("no email or phone to match the profile on")
    verb = "ingest" if add else "remove"
    url = f"{settings.api_base}/v1/audienceMembers:{verb}"
    return post(client, "POST", url, now, json=body, headers=auth)
