"""The `channels.templates` key: message templates, validated when the playbook loads.

Each template is trial-rendered with a sample context, so a typo or an injection attempt fails
`playbook validate`, not a send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from leadloop.channels.fields import ChannelFields
from leadloop.channels.settings import MEDIA_TYPES, Media, MessageSpec, WhatsAppTemplateRef
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
from leadloop.playbook.fields import fail
from leadloop.playbook.nodes import Map, Scalar, join

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


def _check(issues: list[TemplateIssue], fields: ChannelFields, key: str) -> None:
    for issue in issues:
        if issue.code in _IGNORED:
            continue
        where = f" (template line {issue.line})" if issue.line else ""
        part = issue.part if issue.part and issue.part != "body" else key
        fields.fail(part if fields.has(part) else key, f"{issue.message}{where}")


def parse_templates(
    fields: ChannelFields,
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
                emails[name] = _email(ChannelFields(item, item_path, "templates.email"), sample)
            else:
                messages[(channel, name)] = _message(
                    ChannelFields(item, item_path, "templates.message"), channel, name, sample
                )
    return emails, messages


def _email(fields: ChannelFields, sample: Mapping[str, Any]) -> EmailTemplate:
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


def _message(
    fields: ChannelFields, channel: str, name: str, sample: Mapping[str, Any]
) -> MessageSpec:
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
