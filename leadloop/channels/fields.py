"""`ChannelFields`: the playbook's `Fields`, checked against the `channels` section's schema."""

from __future__ import annotations

from leadloop.playbook.fields import Fields, type_name, url_problem
from leadloop.playbook.nodes import Scalar

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


class ChannelFields(Fields):
    """`Fields` checked against this section's schema."""

    schema = SCHEMA

    def sub(self, key: str, section: str) -> ChannelFields | None:
        node = self.get(key)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return None
        return ChannelFields(node, self.at(key), section)

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
        problem = url_problem(value) if value else None
        if problem is not None:
            self.fail(key, problem)
        return value
