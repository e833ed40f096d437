"""Step 2 of a `MessageSender` batch: per row, pure steps before any send.

Given what step 1 read (the profile, its address, suppressions, the service window), a row ends
here with either a `final` status and reason (disabled channel, no address, suppressed, no
template, a template that fails to render, outside the window) or a `request` ready to call:
the template rendered in the sandbox, the provider payload built, and for the rate-limited
channels a token taken (`channels.ratelimit`), else the row is `throttled` and waits. Nothing
here talks to a provider or writes a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from leadloop.channels import audiences, instagram, sms, whatsapp
from leadloop.channels import email as email_channel
from leadloop.channels.model import Failed, SendResult, Sent, reference
from leadloop.channels.ratelimit import Limiter
from leadloop.channels.records import MessageRecord
from leadloop.channels.service import ChannelServices
from leadloop.channels.settings import ChannelsConfig
from leadloop.channels.tracking import Kind, Token, is_trackable_url, sign
from leadloop.outbox.service import Claimed
from leadloop.personalization.templates import (
    MessageTemplate,
    TemplateIssue,
    render_email,
    render_message,
    render_template,
)


@dataclass
class MessageRow:
    """One claimed outbox row, filled in as the batch goes: read, prepared, sent."""

    index: int
    item: Claimed
    workspace: str
    message_id: str
    channel: str
    template: str
    profile_id: str | None
    journey: str | None
    step: str | None
    payload: dict[str, Any]
    view: dict[str, Any] | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)
    existing: MessageRecord | None = None
    suppressed: str | None = None
    last_inbound: float | None = None
    address: str = ""
    final: tuple[str, str] | None = None
    """(record status, reason) when the row ends before any send."""
    request: Callable[[], SendResult] | None = None
    email: Any = None
    throttled: tuple[float, str] | None = None
    """(when its rate-limit token frees, why): the row waits, nothing is sent now."""


def text_of(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class RowPreparer:
    """Prepares rows for one `MessageSender`: its channel services and its rate limiter."""

    def __init__(self, channel_services: ChannelServices, limiter: Limiter) -> None:
        self.services = channel_services
        self.engine = channel_services.engine
        self.limiter = limiter

    def prepare(self, row: MessageRow, now: float) -> None:
        config = self.services.config(row.workspace)
        if row.view is None:
            row.final = ("failed", f"profile {row.profile_id!r} not found")
            return
        if row.channel == "audience":
            self._prepare_audience(row, config, now)
            return
        if row.channel in config.disabled:
            row.final = (
                "skipped",
                f"channel {row.channel} is disabled: {config.disabled[row.channel]}",
            )
            return
        if not row.address:
            row.final = ("skipped", f"the profile has no {row.channel} address")
            return
        if row.suppressed is not None:
            row.final = ("suppressed", f"{row.channel} address is suppressed: {row.suppressed}")
            return
        if row.channel == "email":
            self._prepare_email(row, config)
        elif row.channel in ("whatsapp", "instagram", "sms"):
            self._prepare_message(row, config, now)
        else:
            row.final = ("failed", f"unknown channel {row.channel!r}")

    def _context(
        self, row: MessageRow, config: ChannelsConfig, unsubscribe_url: str
    ) -> dict[str, Any]:
        assert row.view is not None
        traits = row.view.get("traits") or {}
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        return {
            "profile": {
                "id": row.profile_id,
                "traits": traits,
                "identities": identities,
                "first_seen": row.view.get("first_seen"),
                "last_seen": row.view.get("last_seen"),
            },
            "traits": traits,
            "scores": row.scores,
            "account": row.account,
            "event": row.payload.get("properties") or {},
            "message": {
                "id": row.message_id,
                "journey": row.journey,
                "step": row.step,
                "channel": row.channel,
                "template": row.template,
            },
            "unsubscribe_url": unsubscribe_url,
        }

    def _track_url(self, row: MessageRow, base: str, kind: Kind, url: str = "") -> str:
        token = sign(self.services.keys()[0], Token(kind, row.workspace, row.message_id, url))
        if kind == "o":
            return f"{base}/t/o/{token}.gif"
        return f"{base}/t/{kind}/{token}"

    def _prepare_email(self, row: MessageRow, config: ChannelsConfig) -> None:
        template = config.email_templates.get(row.template)
        if template is None:
            row.final = ("failed", f"no email template {row.template!r} in the channels section")
            return
        base = config.public_url
        unsubscribe_url = self._track_url(row, base, "u")
        rendered = render_email(template, self._context(row, config, unsubscribe_url))
        if isinstance(rendered, TemplateIssue):
            row.final = ("failed", f"template {row.template!r}: {_issue(rendered)}")
            return
        markup = rendered.html
        if markup:
            if config.email.track_clicks:

                def track(url: str) -> str | None:
                    if not is_trackable_url(url) or url.startswith(f"{base}/t/"):
                        return None
                    return self._track_url(row, base, "c", url)

                markup = email_channel.rewrite_links(markup, track)
            pixel = self._track_url(row, base, "o") if config.email.track_opens else None
            markup = email_channel.decorate_html(markup, rendered.preheader, pixel)
        envelope = email_channel.Envelope(
            sender=config.email.sender,
            to=row.address,
            message_id=row.message_id,
            message_id_header=email_channel.message_id_header(
                row.workspace, row.message_id, config.email.sender
            ),
            unsubscribe_url=unsubscribe_url,
            reply_to=config.email.reply_to,
        )
        outgoing = email_channel.compose(rendered, envelope, markup, self.engine.clock.now())
        row.email = (config.email.smtp_url, outgoing)
        # A placeholder: emails go out in groups per SMTP server (`MessageSender._deliver`).
        row.request = lambda: Failed("email is sent in groups")

    def _render(self, row: MessageRow, source: str, context: dict[str, Any]) -> str | None:
        result = render_template(source, context)
        if isinstance(result, TemplateIssue):
            row.final = ("failed", f"template {row.template!r}: {_issue(result)}")
            return None
        return result.text.strip()

    def _prepare_message(self, row: MessageRow, config: ChannelsConfig, now: float) -> None:
        spec = config.messages.get((row.channel, row.template))
        if spec is None:
            row.final = ("failed", f"no {row.channel} template {row.template!r}")
            return
        tag: str | None = None
        if row.channel == "instagram":
            refusal, tag = instagram.window_refusal(
                row.last_inbound, now, config.instagram.message_tag
            )
            if refusal:
                row.final = ("failed", refusal)
                return
        context = self._context(row, config, "")
        text = ""
        if spec.text:
            rendered = render_message(MessageTemplate(row.channel, spec.text), context)
            if isinstance(rendered, TemplateIssue):
                row.final = ("failed", f"template {row.template!r}: {_issue(rendered)}")
                return
            text = rendered.text
        link = caption = ""
        if spec.media is not None:
            link = self._render(row, spec.media.link, context) or ""
            caption = (
                self._render(row, spec.media.caption, context) or "" if spec.media.caption else ""
            )
            if row.final is not None:
                return
            if not is_trackable_url(link):
                row.final = ("failed", f"media link {link!r} is not an http(s) URL")
                return
        http = self.services.http
        address = row.address
        if row.channel == "whatsapp":
            settings = config.whatsapp
            ref = reference(row.workspace, row.message_id)
            open_window = whatsapp.in_service_window(row.last_inbound, now)
            if open_window and (text or spec.media is not None):
                body = whatsapp.free_form(address, text, spec.media, link, caption, ref)
            elif spec.template is not None:
                params = [self._render(row, p, context) or "" for p in spec.template.params]
                if row.final is not None:
                    return
                body = whatsapp.template_message(
                    address, spec.template.name, spec.template.language, params, ref
                )
            else:
                row.final = (
                    "failed",
                    "outside the 24-hour WhatsApp service window and the template has no "
                    "approved `template:` to send instead",
                )
                return
            row.request = lambda: whatsapp.send(http, settings, body, now)
            self._throttle(row, settings.phone_number_id, settings.rate_limit, now)
        elif row.channel == "instagram":
            ig = config.instagram
            parts = instagram.payloads(address, text, spec.media, link, tag)

            def send_parts() -> SendResult:
                result: SendResult = Failed("nothing to send")
                for part in parts:
                    result = instagram.send(http, ig, part, now)
                    if not isinstance(result, Sent):
                        return result
                return result

            row.request = send_parts
            self._throttle(row, ig.account_id, ig.rate_limit, now, len(parts))
        else:
            settings_sms = config.sms
            # The URL names the message: a status may come before the SID is on record.
            ref = quote(reference(row.workspace, row.message_id), safe="")
            callback = (
                f"{config.public_url}/hooks/twilio?ref={ref}"
                if config.public_url and settings_sms.status_callback
                else ""
            )
            fields = sms.form(settings_sms, address, text, link, callback)
            row.request = lambda: sms.send(http, settings_sms, fields, now)
            self._throttle(row, settings_sms.sender, settings_sms.rate_limit, now)

    def _throttle(
        self, row: MessageRow, sender: str, rate: float, now: float, count: int = 1
    ) -> None:
        """Take the send's token(s), or hold the row until they free."""
        key = (row.workspace, row.channel, sender)
        due = self.limiter.acquire(key, rate, f"{row.workspace}\x00{row.message_id}", now, count)
        if due is not None:
            row.request = None
            row.throttled = (
                due,
                f"rate limit: {row.channel} sender {sender} allows {rate:g} messages/s; "
                f"next token in {due - now:.3f}s",
            )

    def _prepare_audience(self, row: MessageRow, config: ChannelsConfig, now: float) -> None:
        audience_id = text_of(row.payload.get("audience")) or ""
        action = row.payload.get("action", "add")
        settings = config.audience(audience_id)
        if settings is None:
            row.final = ("failed", f"no audience {audience_id!r} in the channels section")
            return
        if settings.disabled_reason:
            row.final = (
                "skipped",
                f"audience {audience_id} is disabled: {settings.disabled_reason}",
            )
            return
        assert row.view is not None
        traits = row.view.get("traits") or {}
        add = action != "remove"
        if add and traits.get(settings.consent_trait) is not True:
            row.final = ("skipped", f"no advertising consent (trait {settings.consent_trait})")
            return
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        email = text_of(traits.get("email")) or text_of(identities.get("email"))
        phone = text_of(traits.get("phone")) or text_of(identities.get("phone"))
        http = self.services.http
        row.request = lambda: audiences.send(http, settings, add, email, phone, now)


def _issue(issue: TemplateIssue) -> str:
    where = f" (line {issue.line})" if issue.line else ""
    part = f"{issue.part}: " if issue.part else ""
    return f"{part}{issue.message}{where}"
