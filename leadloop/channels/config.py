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
playbook must load on a laptop without provider accounts. Templates are validated here, with a
sample context, so a typo or an injection attempt fails `playbook validate`, not a send.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from leadloop.errors import PlaybookError
from leadloop.personalization.templates import (
    CHANNEL_LIMITS,
    EmailTemplate,
    IssueCode,
    MessageTemplate,
    TemplateIssue,
    validate_email,
    validate_message,
    validate_template,
)
from leadloop.playbook.fields import Fields, fail, type_name
from leadloop.playbook.model import Playbook, PlaybookWarning
from leadloop.playbook.nodes import Map, Node, Scalar, Seq, join

log = logging.getLogger("leadloop.channels")

SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "channels": (
        frozenset(),
        frozenset(
            {
                "public_url",
                "email",
                "whatsapp",
                "instagram",
                "sms",
                "meta",
                "audiences",
                "templates",
            }
        ),
    ),
    "channels.email": (
        frozenset(),
        frozenset(
            {"smtp_url", "from", "reply_to", "webhook_secret", "track_opens", "track_clicks"}
        ),
    ),
    "channels.whatsapp": (
        frozenset(),
        frozenset({"api_base", "api_version", "token", "phone_number_id", "rate_limit"}),
    ),
    "channels.instagram": (
        frozenset(),
        frozenset({"api_base", "api_version", "token", "account_id", "message_tag", "rate_limit"}),
    ),
    "channels.sms": (
        frozenset(),
        frozenset(
            {"api_base", "account_sid", "auth_token", "from", "status_callback", "rate_limit"}
        ),
    ),
    "channels.meta": (frozenset(), frozenset({"app_secret", "verify_token"})),
    "channels.audiences[]": (
        frozenset({"id", "type"}),
        frozenset(
            {
                "audience_id",
                "token",
                "api_base",
                "api_version",
                "operating_account",
                "consent_trait",
                "default_region",
            }
        ),
    ),
    "templates.email": (frozenset({"subject"}), frozenset({"preheader", "html", "text"})),
    "templates.message": (frozenset(), frozenset({"text", "media", "template"})),
    "media": (frozenset({"type", "link"}), frozenset({"caption"})),
    "whatsapp_template": (frozenset({"name"}), frozenset({"language", "params"})),
}
"""Keys each mapping of the section accepts; docs/channels.md documents every one (tested)."""

GRAPH_API = "https://graph.facebook.com"
INSTAGRAM_API = "https://graph.instagram.com"
TWILIO_API = "https://api.twilio.com"
DATA_MANAGER_API = "https://datamanager.googleapis.com"
GRAPH_VERSION = "v21.0"
WHATSAPP_RATE = 80.0
"""Messages per second per business phone number: the Cloud API's default throughput
(WhatsApp Cloud API "Throughput": 80 messages per second, upgradable to 1,000)."""
INSTAGRAM_RATE = 100.0
"""Send API calls per second per Instagram professional account (Instagram Platform "Send API",
rate limits: 100 calls/s for text, links, reactions and stickers; 10/s for audio or video)."""
SMS_RATE = 1.0
"""Messages per second per sender: a US/Canada 10DLC or long-code number sends 1 segment per
second (Twilio "Understanding Twilio rate limits and message queues"); raise it for toll-free
(3/s), short codes (100/s) or a messaging service."""
INSTAGRAM_TAGS = frozenset({"HUMAN_AGENT"})
"""Message tags Instagram messaging accepts (Instagram Platform "Send API", "Human Agent": a
human reply within 7 days of the person's last message)."""
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "file"})
AUDIENCE_TYPES = frozenset({"meta", "google"})


@dataclass(frozen=True, slots=True)
class EmailSettings:
    smtp_url: str = field(default="", repr=False)
    sender: str = ""
    reply_to: str = ""
    webhook_secret: str = field(default="", repr=False)
    track_opens: bool = True
    track_clicks: bool = True


@dataclass(frozen=True, slots=True)
class WhatsAppSettings:
    api_base: str = GRAPH_API
    api_version: str = GRAPH_VERSION
    token: str = field(default="", repr=False)
    phone_number_id: str = ""
    rate_limit: float = WHATSAPP_RATE
    """Messages per second per phone number id (0: no limit)."""


@dataclass(frozen=True, slots=True)
class InstagramSettings:
    api_base: str = INSTAGRAM_API
    api_version: str = GRAPH_VERSION
    token: str = field(default="", repr=False)
    account_id: str = "me"
    message_tag: str = ""
    """`HUMAN_AGENT`: sends outside the 24-hour window (within 7 days) carry this tag; empty:
    outside the window a message is refused with the reason."""
    rate_limit: float = INSTAGRAM_RATE


@dataclass(frozen=True, slots=True)
class SmsSettings:
    api_base: str = TWILIO_API
    account_sid: str = ""
    auth_token: str = field(default="", repr=False)
    sender: str = ""
    status_callback: bool = True
    rate_limit: float = SMS_RATE
    """Messages per second per `from` number (0: no limit)."""


@dataclass(frozen=True, slots=True)
class MetaSettings:
    app_secret: str = field(default="", repr=False)
    verify_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class AudienceSettings:
    id: str
    type: str
    """`meta` (Custom Audience) or `google` (Customer Match through the Data Manager API)."""
    audience_id: str = ""
    token: str = field(default="", repr=False)
    api_base: str = ""
    api_version: str = GRAPH_VERSION
    operating_account: str = ""
    consent_trait: str = "ad_consent"
    default_region: str | None = None
    disabled_reason: str = ""


@dataclass(frozen=True, slots=True)
class Media:
    type: str
    link: str
    """A template: rendered with the message's context."""
    caption: str = ""


@dataclass(frozen=True, slots=True)
class WhatsAppTemplateRef:
    """An approved WhatsApp template, for sends outside the 24-hour service window."""

    name: str
    language: str = "en_US"
    params: tuple[str, ...] = ()
    """Body parameters `{{1}}`, `{{2}}`…, each a Jinja template rendered per send."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    channel: str
    name: str
    text: str = ""
    media: Media | None = None
    template: WhatsAppTemplateRef | None = None


@dataclass(frozen=True, slots=True)
class ChannelsConfig:
    public_url: str = ""
    email: EmailSettings = EmailSettings()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    instagram: InstagramSettings = InstagramSettings()
    sms: SmsSettings = SmsSettings()
    meta: MetaSettings = MetaSettings()
    audiences: tuple[AudienceSettings, ...] = ()
    email_templates: Mapping[str, EmailTemplate] = field(default_factory=dict)
    messages: Mapping[tuple[str, str], MessageSpec] = field(default_factory=dict)
    disabled: Mapping[str, str] = field(default_factory=dict)
    """Channel → why it is off (settings missing)."""
    warnings: tuple[PlaybookWarning, ...] = ()

    def enabled_channels(self) -> frozenset[str]:
        """What the policy may route sends to (`policy.model.Recipient.channel_enabled`)."""
        return frozenset(
            c for c in ("email", "whatsapp", "instagram", "sms") if c not in self.disabled
        )

    def template_names(self) -> dict[str, set[str]]:
        """Channel → declared template names (`journeys.config.parse_journeys(known_templates=…)`)."""
        names: dict[str, set[str]] = {"email": set(self.email_templates)}
        for channel, name in self.messages:
            names.setdefault(channel, set()).add(name)
        return names

    def audience(self, audience_id: str) -> AudienceSettings | None:
        return next((a for a in self.audiences if a.id == audience_id), None)


EMPTY = ChannelsConfig()


class _Fields(Fields):
    """`Fields` checked against this section's schema."""

    schema = SCHEMA

    def sub(self, key: str, section: str) -> _Fields | None:
        node = self.get(key)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return None
        return _Fields(node, self.at(key), section)

    def setting(self, key: str, default: str = "") -> str:
        """A string setting; empty (an unset `${VAR:-}`) reads as the default."""
        value = self.value(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str | int):
            self.fail(key, f"expected a string, got {type_name(self.get(key) or self.map)}")
        return str(value).strip()

    def rate(self, key: str, default: float) -> float:
        """Messages per second: a number, or a numeric string (from `${VAR:-}`); 0 = no limit."""
        value = self.value(key)
        if value is None or value == "":
            return default
        try:
            rate = float(value) if not isinstance(value, bool) else -1.0
        except (TypeError, ValueError):
            rate = -1.0
        if rate < 0 or rate != rate or rate == float("inf"):
            self.fail(
                key, f"expected messages per second (a number, 0 for no limit), got {value!r}"
            )
        return rate

    def url(self, key: str, default: str = "") -> str:
        value = self.setting(key, default).rstrip("/")
        if value and urlsplit(value).scheme not in ("http", "https"):
            self.fail(key, "expected an http:// or https:// URL")
        return value


# --- sample context: what templates may refer to -----------------------------------------------


class _Anything(dict[str, Any]):
    """A mapping with every key: traits and properties differ per profile, so their fields
    cannot be checked statically; only the top-level names are."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and not key.startswith("_")

    def __missing__(self, key: str) -> _Anything:
        return _Anything()


TEMPLATE_VARIABLES = (
    "profile",
    "traits",
    "scores",
    "account",
    "event",
    "message",
    "unsubscribe_url",
)
"""Top-level names every template may use (docs/channels.md)."""


def sample_context() -> dict[str, Any]:
    return {
        "profile": _Anything(),
        "traits": _Anything(),
        "scores": _Anything(),
        "account": _Anything(),
        "event": _Anything(),
        "message": {"id": "m", "journey": "j", "step": "s", "channel": "c", "template": "t"},
        "unsubscribe_url": "https://example.invalid/t/u/token",
    }


_IGNORED = frozenset({IssueCode.RENDER, IssueCode.UNDEFINED})
"""Trial-render failures that come from the sample values (e.g. `traits.age + 1` on the
placeholder), not from the template."""


def _check(issues: list[TemplateIssue], fields: _Fields, key: str) -> None:
    for issue in issues:
        if issue.code in _IGNORED:
            continue
        where = f" (template line {issue.line})" if issue.line else ""
        part = issue.part if issue.part and issue.part != "body" else key
        fields.fail(part if fields.has(part) else key, f"{issue.message}{where}")


# --- parsing ------------------------------------------------------------------------------------


def parse_channels(node: Node | None) -> ChannelsConfig:
    """Validate the section; raises `PlaybookError` for the first problem."""
    empty = isinstance(node, Scalar) and node.value is None
    if node is None or empty or (isinstance(node, Seq) and not node.items):
        return ChannelsConfig(disabled=_all_disabled("no channels section"))
    fields = _Fields(node, "channels", "channels")
    warnings: list[PlaybookWarning] = []
    disabled: dict[str, str] = {}

    def off(channel: str, section: _Fields | None, missing: list[str]) -> None:
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
        if smtp_url and urlsplit(smtp_url).scheme not in ("smtp", "smtps"):
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
    email_templates, messages = _templates(fields)
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


def _audiences(fields: _Fields, warnings: list[PlaybookWarning]) -> tuple[AudienceSettings, ...]:
    out: list[AudienceSettings] = []
    for node, path in fields.items("audiences"):
        item = _Fields(node, path, "channels.audiences[]")
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


def _templates(
    fields: _Fields,
) -> tuple[dict[str, EmailTemplate], dict[tuple[str, str], MessageSpec]]:
    emails: dict[str, EmailTemplate] = {}
    messages: dict[tuple[str, str], MessageSpec] = {}
    node = fields.get("templates")
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return emails, messages
    if not isinstance(node, Map):
        fields.fail("templates", "expected a mapping of channel → templates")
    sample = sample_context()
    for channel, group in node.values.items():
        path = join("channels.templates", channel)
        if channel != "email" and channel not in CHANNEL_LIMITS:
            fail(group, path, f"unknown channel (expected: email, {', '.join(CHANNEL_LIMITS)})")
        if not isinstance(group, Map):
            fail(group, path, "expected a mapping of template name → template")
        for name, item in group.values.items():
            item_path = join(path, name)
            if channel == "email":
                emails[name] = _email(_Fields(item, item_path, "templates.email"), sample)
            else:
                messages[(channel, name)] = _message(
                    _Fields(item, item_path, "templates.message"), channel, name, sample
                )
    return emails, messages


def _email(fields: _Fields, sample: Mapping[str, Any]) -> EmailTemplate:
    template = EmailTemplate(
        subject=fields.text("subject"),
        preheader=fields.text("preheader", "") if fields.has("preheader") else "",
        html=fields.text("html", "") if fields.has("html") else "",
        text=fields.text("text", "") if fields.has("text") else "",
    )
    if not template.html and not template.text:
        fields.fail("text", "an email needs a text part, an html part or both")
    _check(validate_email(template, sample), fields, "subject")
    return template


def _message(fields: _Fields, channel: str, name: str, sample: Mapping[str, Any]) -> MessageSpec:
    text = fields.text("text", "") if fields.has("text") else ""
    if text:
        _check(validate_message(MessageTemplate(channel, text), sample), fields, "text")
    media = None
    media_fields = fields.sub("media", "media")
    if media_fields is not None:
        kind = media_fields.text("type")
        if kind not in MEDIA_TYPES:
            media_fields.fail("type", f"expected one of: {', '.join(sorted(MEDIA_TYPES))}")
        link = media_fields.text("link")
        _check(validate_template(link, sample), media_fields, "link")
        caption = media_fields.text("caption", "") if media_fields.has("caption") else ""
        if caption:
            _check(validate_template(caption, sample), media_fields, "caption")
        media = Media(kind, link, caption)
    wa_template = None
    template_fields = fields.sub("template", "whatsapp_template")
    if template_fields is not None:
        if channel != "whatsapp":
            fields.fail("template", "approved templates exist only on whatsapp")
        params = template_fields.texts("params")
        for param in params:
            _check(validate_template(param, sample), template_fields, "params")
        wa_template = WhatsAppTemplateRef(
            name=template_fields.name("name"),
            language=template_fields.text("language", "en_US"),
            params=params,
        )
    if not text and media is None and wa_template is None:
        fields.fail("text", "a message needs text, media or (whatsapp) an approved template")
    return MessageSpec(channel, name, text, media, wa_template)


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
