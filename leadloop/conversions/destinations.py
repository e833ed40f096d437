"""The destinations of the playbook's `conversions` section (`conversions.destinations[]`):
per-platform settings validated into a `DestinationConfig`, disabled with a reason when a
credential or id is empty (the caller turns the reason into a warning), an error at
file/line/field when a value is malformed.

Google destinations take either a static `access_token` or a `service_account_file` (a key
file read and checked here, at validation: `google_credentials`). With both, the service account
wins, with a warning: its tokens renew themselves, while an access token pasted into the
environment expires within the hour, so it is the setting that keeps working."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from leadloop.conversions.google_credentials import (
    ServiceAccount,
    ServiceAccountError,
    load_service_account,
    resolve_path,
)
from leadloop.conversions.model import (
    Destination,
    GoogleAdsDestination,
    GoogleDestination,
    MetaDestination,
    Platform,
    TikTokDestination,
)
from leadloop.playbook.fields import Fields

PLATFORMS: tuple[Platform, ...] = ("meta", "google", "google_ads", "tiktok")
_GOOGLE_DESTINATION = re.compile(
    r"^(?:customers/)?(?P<account>\d[\d-]*)(?:/conversionActions)?/(?P<action>\d+)$"
)
_CUSTOMER_ID = re.compile(r"\d{3}-?\d{3}-?\d{4}")
_CONVERSION_ACTION = re.compile(
    r"(?:customers/(?P<owner>\d{3}-?\d{3}-?\d{4})/conversionActions/)?(?P<action>\d+)"
)


@dataclass(frozen=True, slots=True)
class DestinationConfig:
    id: str
    platform: Platform
    destination: Destination | None
    """None when disabled."""
    access_token: str = field(default="", repr=False)
    app_secret: str | None = field(default=None, repr=False)
    disabled_reason: str | None = None
    developer_token: str = field(default="", repr=False)
    """Google Ads API only (`developer-token` header)."""
    service_account: ServiceAccount | None = field(default=None, repr=False)
    """Google only: tokens come from this account's key (then `access_token` is empty)."""
    note: str | None = None
    """A setting that is ignored, for a warning (an access token beside a service account)."""

    @property
    def enabled(self) -> bool:
        return self.destination is not None


def parse_region(fields: Fields, key: str) -> str | None:
    region = fields.optional_text(key)
    if region is None or region == "":
        return None
    if not re.fullmatch(r"[A-Za-z]{2}", region):
        fields.fail(key, "expected an ISO-3166 alpha-2 region such as US or GB")
    return region.upper()


def _url(fields: Fields, default: str) -> str:
    return (fields.url("base_url") or default).rstrip("/")


def _int(fields: Fields, key: str, default: int) -> int:
    value = fields.number(key, float(default))
    if value != int(value):
        fields.fail(key, "expected a whole number")
    return int(value)


def parse_destination(fields: Fields, section_region: str | None) -> DestinationConfig:
    dest_id = fields.name("id")
    kind = fields.text("type")
    if kind not in PLATFORMS:
        fields.fail("type", f"expected one of: {', '.join(PLATFORMS)}")
    region = parse_region(fields, "default_region") or section_region
    token = fields.text("access_token", "")
    service_account = _service_account(fields, kind)
    test_code = fields.optional_text("test_event_code") or None
    missing: list[str] = []
    if not token and service_account is None:
        google = kind in ("google", "google_ads")
        missing.append("access_token (or service_account_file)" if google else "access_token")
    destination: Destination | None = None
    if kind == "meta":
        pixel = fields.text("pixel_id", "")
        missing += [] if pixel else ["pixel_id"]
        meta = MetaDestination(
            pixel_id=pixel,
            api_version=fields.text("api_version", "v26.0"),
            base_url=_url(fields, "https://graph.facebook.com"),
            test_event_code=test_code,
            default_region=region,
            lead_event_source=fields.optional_text("lead_event_source") or None,
            hash_external_id=fields.boolean("hash_external_id", True),
            ldu_country=_int(fields, "ldu_country", 0),
            ldu_state=_int(fields, "ldu_state", 0),
        )
        destination = meta
        platform: Platform = "meta"
    elif kind == "google":
        account, action = _google_ids(fields)
        missing += [] if account else ["operating_account"]
        missing += [] if action else ["conversion_action"]
        window = fields.optional_duration("click_through_window")
        destination = GoogleDestination(
            operating_account_id=account,
            conversion_action_id=action,
            login_account_id=fields.optional_text("login_account") or None,
            base_url=_url(fields, "https://datamanager.googleapis.com"),
            validate_only=fields.boolean("validate_only", False),
            default_region=region,
            click_through_window_days=int(window / 86400) if window else 90,
        )
        platform = "google"
    elif kind == "google_ads":
        destination, needed = _google_ads(fields, region)
        missing += needed
        platform = "google_ads"
    else:
        pixel = fields.text("pixel_code", "")
        missing += [] if pixel else ["pixel_code"]
        source = fields.text("event_source", "web")
        if source not in ("web", "app", "offline", "crm"):
            fields.fail("event_source", "expected one of: web, app, offline, crm")
        destination = TikTokDestination(
            pixel_code=pixel,
            event_source=source,  # type: ignore[arg-type]  # checked just above
            base_url=_url(fields, "https://business-api.tiktok.com"),
            test_event_code=test_code,
            partner_name=fields.optional_text("partner_name") or None,
            default_region=region,
        )
        platform = "tiktok"
    app_secret = fields.optional_text("app_secret") or None
    developer_token = fields.text("developer_token", "") if kind == "google_ads" else ""
    if missing:
        return DestinationConfig(
            dest_id, platform, None, disabled_reason=f"{', '.join(missing)} not set"
        )
    note = None
    if service_account is not None and token:
        note = (
            "both access_token and service_account_file are set: the service account is used "
            "(its tokens renew themselves; a pasted access token expires within the hour)"
        )
    return DestinationConfig(
        dest_id,
        platform,
        destination,
        "" if service_account is not None else token,
        app_secret,
        developer_token=developer_token,
        service_account=service_account,
        note=note,
    )


def _service_account(fields: Fields, kind: str) -> ServiceAccount | None:
    """The key file named by `service_account_file`, read and checked now, so a missing or
    malformed file is an error at validate and apply time rather than dead letters later.
    Empty (an unset `${VAR:-}`) means none."""
    path = fields.text("service_account_file", "").strip()
    if not path:
        return None
    if kind not in ("google", "google_ads"):
        fields.fail(
            "service_account_file", "only google and google_ads destinations take a key file"
        )
    node = fields.get("service_account_file")
    assert node is not None  # it has a value
    try:
        return load_service_account(resolve_path(path, node.mark.file))
    except ServiceAccountError as error:
        fields.fail("service_account_file", f"{path}: {error}")


def _google_ads(fields: Fields, region: str | None) -> tuple[GoogleAdsDestination, list[str]]:
    """The Google Ads API destination and the names of its empty required settings. Ids are
    written with or without dashes (`123-456-7890`); a malformed one is an error, not a
    warning, since no environment could make it work."""
    customer = _id(fields, "customer_id")
    if customer and not _CUSTOMER_ID.fullmatch(customer):
        fields.fail(
            "customer_id", "expected a 10-digit Google Ads customer id such as 123-456-7890"
        )
    login = _id(fields, "login_customer_id")
    if login and not _CUSTOMER_ID.fullmatch(login):
        fields.fail(
            "login_customer_id",
            "expected the 10-digit customer id of a manager account such as 123-456-7890",
        )
    action = _id(fields, "conversion_action")
    found = _CONVERSION_ACTION.fullmatch(action)
    if action and found is None:
        fields.fail(
            "conversion_action",
            "expected a conversion action id (digits) or its resource name "
            "customers/<customer id>/conversionActions/<id>",
        )
    owner = found.group("owner") if found else None
    version = fields.text("api_version", "v26")
    if not re.fullmatch(r"v\d+", version):
        fields.fail("api_version", "expected a Google Ads API version such as v26")
    window = fields.optional_duration("click_through_window")
    destination = GoogleAdsDestination(
        customer_id=customer.replace("-", ""),
        conversion_action_id=found.group("action") if found else "",
        conversion_action_owner=owner.replace("-", "") if owner else None,
        login_customer_id=login.replace("-", "") or None,
        api_version=version,
        base_url=_url(fields, "https://googleads.googleapis.com"),
        validate_only=fields.boolean("validate_only", False),
        default_region=region,
        click_through_window_days=int(window / 86400) if window else 90,
    )
    needed = [
        name
        for name, value in (
            ("customer_id", customer),
            ("conversion_action", action),
            ("developer_token", fields.text("developer_token", "")),
        )
        if not value
    ]
    return destination, needed


def _id(fields: Fields, key: str) -> str:
    """An account or action id, which YAML reads as a number when written without dashes."""
    value = fields.value(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return fields.text(key, "").strip()


def _google_ids(fields: Fields) -> tuple[str, str]:
    """`destination: <operating account>/<conversion action>` (or
    `customers/<id>/conversionActions/<id>`), or the two keys on their own."""
    combined = fields.text("destination", "")
    account = fields.text("operating_account", "")
    action = fields.text("conversion_action", "")
    if combined:
        found = _GOOGLE_DESTINATION.match(combined.strip())
        if found is None:
            fields.fail(
                "destination",
                "expected <operating account id>/<conversion action id>, e.g. 1234567890/987654",
            )
        account = account or found.group("account")
        action = action or found.group("action")
    return account.replace("-", ""), action
