"""The `journeys.policy` key: the contact-pressure policy (caps, quiet hours, fallback channels,
enabled channels, consent traits), parsed into `policy.model.PolicyConfig`.
"""

from __future__ import annotations

from collections.abc import Iterable

from leadloop.journeys.fields import JourneyFields
from leadloop.playbook.fields import Fields
from leadloop.playbook.nodes import Map
from leadloop.policy.model import CHANNELS, DEFAULT_CONSENT, Cap, PolicyConfig, QuietHours


def parse_policy(fields: JourneyFields) -> PolicyConfig:
    caps = []
    for node, path in fields.items("caps"):
        cap = JourneyFields(node, path, "caps[]")
        most = cap.number("max")
        if most < 1 or most != int(most):
            cap.fail("max", "expected a whole number of at least 1")
        per = cap.duration("per")
        if per <= 0:
            cap.fail("per", "must be longer than 0")
        channels = cap.texts("channels") or cap.texts("channel")
        check_channels(cap, "channels" if cap.has("channels") else "channel", channels)
        caps.append(Cap(int(most), per, channels))
    quiet = None
    quiet_fields = fields.sub("quiet_hours", "quiet_hours")
    if quiet_fields is not None:
        start, end = local_minutes(quiet_fields, "start"), local_minutes(quiet_fields, "end")
        if start == end:
            # Read as no quiet hours at all, while whoever wrote it more likely meant all day.
            quiet_fields.fail("end", "the same time as start: that is no quiet hours at all")
        channels = quiet_fields.texts("channels")
        check_channels(quiet_fields, "channels", channels)
        quiet = QuietHours(start, end, channels)
    timezone = fields.text("default_timezone", "UTC")
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        fields.fail("default_timezone", f"unknown IANA time zone {timezone!r}")
    fallback: dict[str, tuple[str, ...]] = {}
    fallback_node = fields.get("fallback")
    if fallback_node is not None:
        node = fallback_node
        if not isinstance(node, Map):
            fields.fail("fallback", "expected a mapping of channel → channels to try next")
        for channel, targets in node.values.items():
            sub = JourneyFields.__new__(JourneyFields)
            sub.map = Map({channel: targets}, {channel: node.key_marks[channel]}, node.mark)
            sub.path = fields.at("fallback")
            names = sub.texts(channel)
            check_channels(sub, channel, (channel, *names))
            fallback[channel] = names
    enabled = fields.texts("channels") if fields.has("channels") else CHANNELS
    check_channels(fields, "channels", enabled)
    consent: dict[str, tuple[str, ...]] = dict(DEFAULT_CONSENT)
    consent_node = fields.get("consent")
    if consent_node is not None:
        node = consent_node
        if not isinstance(node, Map):
            fields.fail("consent", "expected a mapping of channel → opt-in trait(s)")
        for channel, traits in node.values.items():
            sub = JourneyFields.__new__(JourneyFields)
            sub.map = Map({channel: traits}, {channel: node.key_marks[channel]}, node.mark)
            sub.path = fields.at("consent")
            check_channels(sub, channel, (channel,))
            consent[channel] = sub.texts(channel)
    return PolicyConfig(
        caps=tuple(caps),
        quiet_hours=quiet,
        default_timezone=timezone,
        fallback=fallback,
        channels=enabled,
        consent=consent,
    )


def check_channels(fields: Fields, key: str, channels: Iterable[str]) -> None:
    for channel in channels:
        if channel not in CHANNELS:
            fields.fail(key, f"unknown channel {channel!r} (expected: {', '.join(CHANNELS)})")


def local_minutes(fields: Fields, key: str) -> int:
    text = fields.value(key)
    # YAML 1.1 reads an unquoted 21:00 as a sexagesimal number (1260).
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text < 24 * 60:
        return text
    if isinstance(text, str):
        hh, sep, mm = text.partition(":")
        # isascii: `isdigit` holds for '²', which `int` refuses (a traceback, not an error).
        digits = sep and text.isascii() and hh.isdigit() and mm.isdigit()
        if digits and int(hh) < 24 and int(mm) < 60:
            return int(hh) * 60 + int(mm)
    fields.fail(key, f"expected a local time like 21:00, got {text!r}")
