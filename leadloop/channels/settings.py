"""Settings of the playbook's `channels` section, as parsed (`channels.config`), and their defaults.

Every provider setting defaults to the provider's documented value, so a playbook names only
what differs; a secret is kept out of `repr` so a logged config never leaks it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from leadloop.personalization.templates import EmailTemplate
from leadloop.playbook.model import PlaybookWarning

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
