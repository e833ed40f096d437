"""The playbook's `channels` section: provider settings and message templates (file/line errors).

    channels:
      public_url: ${LEADLOOP_PUBLIC_URL:-http://127.0.0.1:8080}   # base of tracking links
      email:
        smtp_url: ${LEADLOOP_SMTP_URL:-}        # smtp://user:pass@host:587 or smtps://host:465
        from: ${LEADLOOP_EMAIL_FROM:-}          # this workspace's sender identity
        webhook_secret: ${LEADLOOP_EMAIL_WEBHOOK_SECRET:-}   # whsec_… for /hooks/email/{provider}
      whatsapp:
        api_base: ${LEADLOOP_WHATSAPP_API_BASE:-}            # default https://graph.facebook.com
        token: ${LEADLOOP_WHATSAPP_TOKEN:-}
        phone_number_id: ${LEADLOOP_WHATSAPP_PHONE_NUMBER_ID:-}
        rate_limit: 80                          # messages/s per phone number (0: none)
      instagram: {api_base: …, token: …, account_id: me, message_tag: HUMAN_AGENT}
      sms: {api_base: …, account_sid: …, auth_token: …, from: …, rate_limit: 1}
      meta: {app_secret: ${LEADLOOP_META_APP_SECRET:-}, verify_token: …}
      audiences:
        - {id: hot-leads, type: meta, audience_id: "…", token: …}
      templates:
        email:
          welcome: {subject: …, preheader: …, html: …, text: …}
        whatsapp:
          intro: {text: …, media: {type: video, link: …}, template: {name: …, language: en_US}}
        sms:
          nudge: {text: …}

A channel whose settings are empty is disabled with a warning, never an error: the example
playbook must load on a laptop without provider accounts. Templates are validated here too
(`channels.templates`), so a typo or an injection attempt fails `playbook validate`, not a send.
The parsed values are `channels.settings` types; the schema of each key is `channels.fields`.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from leadloop.channels.fields import ChannelFields
from leadloop.channels.settings import (
    AUDIENCE_TYPES,
    DATA_MANAGER_API,
    GRAPH_API,
    GRAPH_VERSION,
    INSTAGRAM_API,
    INSTAGRAM_RATE,
    INSTAGRAM_TAGS,
    SMS_RATE,
    TWILIO_API,
    WHATSAPP_RATE,
    AudienceSettings,
    ChannelsConfig,
    EmailSettings,
    InstagramSettings,
    MetaSettings,
    SmsSettings,
    WhatsAppSettings,
)
from leadloop.channels.templates import parse_templates
from leadloop.errors import PlaybookError
from leadloop.playbook.model import Playbook, PlaybookWarning
from leadloop.playbook.nodes import Node, Scalar, Seq

log = logging.getLogger("leadloop.channels")


# --- parsing ------------------------------------------------------------------------------------


def parse_channels(node: Node | None) -> ChannelsConfig:
    """Validate the section; raises `PlaybookError` for the first problem."""
    empty = isinstance(node, Scalar) and node.value is None
    if node is None or empty or (isinstance(node, Seq) and not node.items):
        return ChannelsConfig(disabled=_all_disabled("no channels section"))
    fields = ChannelFields(node, "channels", "channels")
    warnings: list[PlaybookWarning] = []
    disabled: dict[str, str] = {}

    def off(channel: str, section: ChannelFields | None, missing: list[str]) -> None:
        reason = f"{', '.join(missing)} not set"
        disabled[channel] = reason
        mark = (section.map if section is not None else fields.map).mark
        warnings.append(
            PlaybookWarning(
                mark.file, mark.line, f"channels.{channel}", f"{channel} is disabled: {reason}"
            )
        )

    public_url = fields.url("public_url")
    email_fields = fields.sub("email", "channels.email")
    email = EmailSettings()
    if email_fields is not None:
        smtp_url = email_fields.setting("smtp_url")
        if smtp_url and _scheme(smtp_url) not in ("smtp", "smtps"):
            email_fields.fail("smtp_url", "expected smtp://… or smtps://…")
        secret = email_fields.setting("webhook_secret")
        if secret and not secret.startswith("whsec_"):
            email_fields.fail("webhook_secret", "expected a Standard Webhooks secret (whsec_…)")
        email = EmailSettings(
            smtp_url=smtp_url,
            sender=email_fields.setting("from"),
            reply_to=email_fields.setting("reply_to"),
            webhook_secret=secret,
            track_opens=email_fields.boolean("track_opens", True),
            track_clicks=email_fields.boolean("track_clicks", True),
        )
    missing = [k for k, v in (("smtp_url", email.smtp_url), ("from", email.sender)) if not v]
    if not public_url:
        missing.append("public_url")
    if missing:
        off("email", email_fields, missing)

    wa_fields = fields.sub("whatsapp", "channels.whatsapp")
    whatsapp = WhatsAppSettings()
    if wa_fields is not None:
        whatsapp = WhatsAppSettings(
            api_base=wa_fields.url("api_base", GRAPH_API),
            api_version=wa_fields.setting("api_version", GRAPH_VERSION),
            token=wa_fields.setting("token"),
            phone_number_id=wa_fields.setting("phone_number_id"),
            rate_limit=wa_fields.rate("rate_limit", WHATSAPP_RATE),
        )
    missing = [
        k
        for k, v in (("token", whatsapp.token), ("phone_number_id", whatsapp.phone_number_id))
        if not v
    ]
    if missing:
        off("whatsapp", wa_fields, missing)

    ig_fields = fields.sub("instagram", "channels.instagram")
    instagram = InstagramSettings()
    if ig_fields is not None:
        instagram = InstagramSettings(
            api_base=ig_fields.url("api_base", INSTAGRAM_API),
            api_version=ig_fields.setting("api_version", GRAPH_VERSION),
            token=ig_fields.setting("token"),
            account_id=ig_fields.setting("account_id", "me"),
            message_tag=ig_fields.setting("message_tag"),
            rate_limit=ig_fields.rate("rate_limit", INSTAGRAM_RATE),
        )
        if instagram.message_tag and instagram.message_tag not in INSTAGRAM_TAGS:
            ig_fields.fail("message_tag", f"expected one of: {', '.join(sorted(INSTAGRAM_TAGS))}")
    if not instagram.token:
        off("instagram", ig_fields, ["token"])

    sms_fields = fields.sub("sms", "channels.sms")
    sms = SmsSettings()
    if sms_fields is not None:
        sms = SmsSettings(
            api_base=sms_fields.url("api_base", TWILIO_API),
            account_sid=sms_fields.setting("account_sid"),
            auth_token=sms_fields.setting("auth_token"),
            sender=sms_fields.setting("from"),
            status_callback=sms_fields.boolean("status_callback", True),
            rate_limit=sms_fields.rate("rate_limit", SMS_RATE),
        )
    missing = [
        k
        for k, v in (
            ("account_sid", sms.account_sid),
            ("auth_token", sms.auth_token),
            ("from", sms.sender),
        )
        if not v
    ]
    if missing:
        off("sms", sms_fields, missing)

    meta_fields = fields.sub("meta", "channels.meta")
    meta = MetaSettings()
    if meta_fields is not None:
        meta = MetaSettings(
            app_secret=meta_fields.setting("app_secret"),
            verify_token=meta_fields.setting("verify_token"),
        )

    audiences = _audiences(fields, warnings)
    email_templates, messages = parse_templates(fields)
    return ChannelsConfig(
        public_url=public_url,
        email=email,
        whatsapp=whatsapp,
        instagram=instagram,
        sms=sms,
        meta=meta,
        audiences=audiences,
        email_templates=email_templates,
        messages=messages,
        disabled=disabled,
        warnings=tuple(warnings),
    )


def _all_disabled(reason: str) -> dict[str, str]:
    return {c: reason for c in ("email", "whatsapp", "instagram", "sms")}


def _audiences(
    fields: ChannelFields, warnings: list[PlaybookWarning]
) -> tuple[AudienceSettings, ...]:
    out: list[AudienceSettings] = []
    for node, path in fields.items("audiences"):
        item = ChannelFields(node, path, "channels.audiences[]")
        audience_id = item.name("id")
        if any(a.id == audience_id for a in out):
            item.fail("id", f"duplicate audience id {audience_id!r}")
        kind = item.text("type")
        if kind not in AUDIENCE_TYPES:
            item.fail("type", f"expected one of: {', '.join(sorted(AUDIENCE_TYPES))}")
        default_base = GRAPH_API if kind == "meta" else DATA_MANAGER_API
        settings = AudienceSettings(
            id=audience_id,
            type=kind,
            audience_id=item.setting("audience_id"),
            token=item.setting("token"),
            api_base=item.url("api_base", default_base),
            api_version=item.setting("api_version", GRAPH_VERSION),
            operating_account=item.setting("operating_account"),
            consent_trait=item.setting("consent_trait", "ad_consent"),
            default_region=item.setting("default_region") or None,
        )
        needed = [("audience_id", settings.audience_id), ("token", settings.token)]
        if kind == "google":
            needed.append(("operating_account", settings.operating_account))
        missing = [k for k, v in needed if not v]
        if missing:
            reason = f"{', '.join(missing)} not set"
            settings = AudienceSettings(**{**_as_dict(settings), "disabled_reason": reason})
            warnings.append(
                PlaybookWarning(
                    node.mark.file,
                    node.mark.line,
                    path,
                    f"audience {audience_id!r} is disabled: {reason}",
                )
            )
        out.append(settings)
    return tuple(out)


def _as_dict(settings: AudienceSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__slots__}


# --- the live playbook's section, parsed once per playbook --------------------------------------

_cache: dict[int, tuple[Playbook, ChannelsConfig]] = {}


def channels_config(playbook: Playbook | None) -> ChannelsConfig:
    """The parsed section of an applied playbook (cached per playbook object). An invalid
    section gives a config with every channel disabled and logs why; `playbook validate` and
    apply report it with its line (`parse_channels`)."""
    if playbook is None:
        return ChannelsConfig(disabled=_all_disabled("no playbook applied"))
    hit = _cache.get(id(playbook))
    if hit is not None and hit[0] is playbook:
        return hit[1]
    try:
        config = parse_channels(playbook.sections.get("channels"))
        for warning in config.warnings:
            log.warning("channels: %s", warning)
    except PlaybookError as error:
        log.error("channels section not used, nothing is sent: %s", error)
        config = ChannelsConfig(disabled=_all_disabled(f"invalid channels section: {error}"))
    if len(_cache) > 64:
        _cache.clear()
    _cache[id(playbook)] = (playbook, config)
    return config


def _scheme(url: str) -> str | None:
    """The URL's scheme, None when it does not parse (urlsplit raises on an unclosed `[`)."""
    try:
        return urlsplit(url).scheme
    except ValueError:
        return None
