"""The playbook's `conversions` section, validated into frozen values (file/line/field errors).

    conversions:
      default_region: US                 # phones written without a country code
      consent:                            # who may be forwarded at all
        traits: [ad_consent]              # a profile trait that is true
        context: [categoryPreferences.advertising]   # under an event's context.consent
      ldu_trait: limited_data_use         # Meta LDU / TikTok limited_data_use from the profile
      destinations:
        - id: meta
          type: meta                      # meta | google | google_ads | tiktok
          pixel_id: ${LEADLOOP_META_PIXEL_ID:-}
          access_token: ${LEADLOOP_META_ACCESS_TOKEN:-}
          base_url: ${LEADLOOP_META_API_BASE:-https://graph.facebook.com}
      mappings:
        - id: purchase
          track: Order Completed
          event: Purchase
          value: properties.revenue
          currency: properties.currency
          contents: properties.products
        - id: mql
          stage: MQL
          event: Lead

A destination whose credentials or ids are empty is disabled with a warning, never an error:
the example playbook must load on a laptop without ad accounts (issue 6). `google` is the Data
Manager API; `google_ads` the Google Ads API (`customer_id`, `conversion_action`,
`developer_token`, optional `login_customer_id`), for accounts Google still allows to upload
click conversions that way (capi.md §2.1). Destinations are parsed in `destinations`.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Any, NoReturn

# DestinationConfig and PLATFORMS are re-exported: callers (app.py) name them from here.
from leadloop.conversions.destinations import PLATFORMS as PLATFORMS
from leadloop.conversions.destinations import DestinationConfig as DestinationConfig
from leadloop.conversions.destinations import parse_destination, parse_region
from leadloop.conversions.model import (
    ActionSource,
    Platform,
)
from leadloop.errors import PlaybookError
from leadloop.playbook.fields import Fields, fail, items
from leadloop.playbook.model import Playbook, PlaybookWarning
from leadloop.playbook.nodes import Map, Node, Scalar
from leadloop.playbook.scoring import _predicate
from leadloop.scoring.model import Condition

SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "conversions": (
        frozenset(),
        frozenset({"default_region", "consent", "ldu_trait", "destinations", "mappings"}),
    ),
    "conversions.consent": (frozenset(), frozenset({"traits", "context", "required"})),
    "conversions.destinations[]": (
        frozenset({"id", "type"}),
        frozenset(
            {
                "base_url",
                "access_token",
                "app_secret",
                "pixel_id",
                "pixel_code",
                "api_version",
                "test_event_code",
                "lead_event_source",
                "hash_external_id",
                "ldu_country",
                "ldu_state",
                "destination",
                "operating_account",
                "conversion_action",
                "login_account",
                "validate_only",
                "click_through_window",
                "event_source",
                "partner_name",
                "default_region",
                "customer_id",
                "developer_token",
                "login_customer_id",
                "service_account_file",
            }
        ),
    ),
    "conversions.mappings[]": (
        frozenset({"id", "event"}),
        frozenset(
            {
                "track",
                "where",
                "stage",
                "model",
                "event_names",
                "destinations",
                "value",
                "currency",
                "default_currency",
                "order_id",
                "event_id",
                "contents",
                "action_source",
                "identifiers",
            }
        ),
    ),
}
"""Keys each mapping of the section accepts (the playbook-wide list is `playbook.fields.SCHEMA`)."""

IDENTIFIERS = (
    "email",
    "phone",
    "name",
    "address",
    "date_of_birth",
    "gender",
    "external_id",
    "lead_id",
    "click_ids",
    "browser_ids",
    "ip",
    "user_agent",
)
ACTION_SOURCES = (
    "email",
    "website",
    "app",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
)


@dataclass(frozen=True, slots=True)
class Mapping:
    id: str
    event_name: str
    track: tuple[str, ...] = ()
    where: tuple[Condition, ...] = ()
    stage: str | None = None
    model: str | None = None
    event_names: dict[str, str] = field(default_factory=dict)
    """Per-platform names (`tiktok: CompletePayment`); `event_name` otherwise."""
    destinations: tuple[str, ...] = ()
    """Empty: every destination of the section."""
    value: str | None = None
    currency: str | None = None
    default_currency: str | None = None
    order_id: str | None = None
    event_id: str | None = None
    contents: str | None = None
    action_source: ActionSource | None = None
    """None: `website` when the event has a page URL and a user agent, `system_generated` for
    stage moves, else `other` (Meta refuses web events without both, capi.md §1.2)."""
    identifiers: frozenset[str] = frozenset(IDENTIFIERS)

    def name_for(self, platform: Platform) -> str:
        return self.event_names.get(platform, self.event_name)


@dataclass(frozen=True, slots=True)
class ConsentConfig:
    traits: tuple[str, ...] = ("ad_consent",)
    context: tuple[str, ...] = ("categoryPreferences.advertising",)
    required: bool = True


@dataclass(frozen=True, slots=True)
class ConversionsConfig:
    destinations: tuple[DestinationConfig, ...] = ()
    mappings: tuple[Mapping, ...] = ()
    consent: ConsentConfig = ConsentConfig()
    default_region: str | None = None
    ldu_trait: str | None = "limited_data_use"
    warnings: tuple[PlaybookWarning, ...] = ()

    def destination(self, destination_id: str) -> DestinationConfig | None:
        return next((d for d in self.destinations if d.id == destination_id), None)

    @property
    def track_names(self) -> frozenset[str]:
        return frozenset(name for m in self.mappings for name in m.track)


EMPTY = ConversionsConfig()


def _purchase_without_currency(mapping: Mapping, destinations: list[DestinationConfig]) -> bool:
    """Whether every Meta Purchase of the mapping with a value is skipped (`check_conversion`)."""
    if mapping.name_for("meta") != "Purchase" or mapping.value is None:
        return False
    if mapping.currency is not None or mapping.default_currency is not None:
        return False
    return any(
        d.platform == "meta" and (not mapping.destinations or d.id in mapping.destinations)
        for d in destinations
    )


class _Fields(Fields):
    """`Fields` checked against this section's own key list."""

    schema = SCHEMA


def parse_conversions(node: Node | None) -> ConversionsConfig:
    """Validate the section (absent, `[]` or null: nothing is forwarded)."""
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return EMPTY
    if not isinstance(node, Map):
        if items(node, "conversions"):
            fail(node, "conversions", "expected a mapping with `destinations` and `mappings`")
        return EMPTY
    section = _Fields(node, "conversions", "conversions")
    warnings: list[PlaybookWarning] = []
    default_region = parse_region(section, "default_region")
    destinations: list[DestinationConfig] = []
    for item, path in section.items("destinations"):
        dest = parse_destination(_Fields(item, path, "conversions.destinations[]"), default_region)
        if any(d.id == dest.id for d in destinations):
            fail(item, f"{path}.id", f"duplicate destination id {dest.id!r}")
        if dest.disabled_reason:
            warnings.append(
                PlaybookWarning(
                    item.mark.file,
                    item.mark.line,
                    path,
                    f"conversion destination {dest.id!r} is disabled: {dest.disabled_reason}",
                )
            )
        if dest.note:
            warnings.append(
                PlaybookWarning(
                    item.mark.file,
                    item.mark.line,
                    path,
                    f"conversion destination {dest.id!r}: {dest.note}",
                )
            )
        destinations.append(dest)
    known = {d.id for d in destinations}
    mappings: list[Mapping] = []
    for item, path in section.items("mappings"):
        mapping = _mapping(_Fields(item, path, "conversions.mappings[]"), known)
        if any(m.id == mapping.id for m in mappings):
            fail(item, f"{path}.id", f"duplicate mapping id {mapping.id!r}")
        if _purchase_without_currency(mapping, destinations):
            # A warning, not an error: a playbook applied before this check must still load.
            warnings.append(
                PlaybookWarning(
                    item.mark.file,
                    item.mark.line,
                    path,
                    f"mapping {mapping.id!r} sends Meta a Purchase with a value and no currency "
                    "(neither `currency` nor `default_currency`): Meta requires one, so its "
                    "events are skipped for Meta",
                )
            )
        mappings.append(mapping)
    consent = ConsentConfig()
    consent_node = section.get("consent")
    if consent_node is not None:
        fields = _Fields(consent_node, section.at("consent"), "conversions.consent")
        consent = ConsentConfig(
            traits=fields.texts("traits") if fields.has("traits") else consent.traits,
            context=fields.texts("context") if fields.has("context") else consent.context,
            required=fields.boolean("required", True),
        )
    ldu_trait = (
        section.optional_text("ldu_trait") if section.has("ldu_trait") else "limited_data_use"
    )
    return ConversionsConfig(
        destinations=tuple(destinations),
        mappings=tuple(mappings),
        consent=consent,
        default_region=default_region,
        ldu_trait=ldu_trait or None,
        warnings=tuple(warnings),
    )


def _mapping(fields: Fields, destinations: set[str]) -> Mapping:
    mapping_id = fields.name("id")
    track = fields.texts("track")
    stage = fields.optional_text("stage") or None
    if bool(track) == bool(stage):
        fields.fail("track", "give exactly one of `track` (event names) and `stage`")
    if stage is not None and fields.has("where"):
        fields.fail("where", "`where` applies to `track` mappings only")
    where = []
    for node, path in fields.items("where"):
        condition = Fields(node, path, "where[]")
        where.append(Condition(condition.name("field"), _predicate(condition)))
    names: dict[str, str] = {}
    names_node = fields.get("event_names")
    if names_node is not None:
        if not isinstance(names_node, Map):
            fields.fail("event_names", "expected a mapping of platform to event name")
        for platform, value in names_node.values.items():
            if platform not in PLATFORMS:
                _fail_at(names_node, fields.at(f"event_names.{platform}"), "unknown platform")
            if not isinstance(value, Scalar) or not isinstance(value.value, str) or not value.value:
                _fail_at(value, fields.at(f"event_names.{platform}"), "expected an event name")
            names[platform] = value.value
    targets = fields.texts("destinations")
    for target in targets:
        if target not in destinations:
            fields.fail("destinations", f"no destination {target!r} under conversions.destinations")
    source = fields.optional_text("action_source") or None
    if source is not None and source not in ACTION_SOURCES:
        fields.fail("action_source", f"expected one of: {', '.join(ACTION_SOURCES)}")
    identifiers = fields.texts("identifiers") if fields.has("identifiers") else IDENTIFIERS
    for name in identifiers:
        if name not in IDENTIFIERS:
            fields.fail("identifiers", f"unknown identifier {name!r} ({', '.join(IDENTIFIERS)})")
    currency = fields.optional_text("default_currency") or None
    if currency is not None and not re.fullmatch(r"[A-Za-z]{3}", currency):
        fields.fail("default_currency", "expected a 3-letter ISO-4217 code")
    return Mapping(
        id=mapping_id,
        event_name=fields.name("event"),
        track=track,
        where=tuple(where),
        stage=stage,
        model=fields.optional_text("model") or None,
        event_names=names,
        destinations=targets,
        value=_path(fields, "value"),
        currency=_path(fields, "currency"),
        default_currency=currency.upper() if currency else None,
        order_id=_path(fields, "order_id"),
        event_id=_path(fields, "event_id"),
        contents=_path(fields, "contents"),
        action_source=source,  # type: ignore[arg-type]  # checked just above
        identifiers=frozenset(identifiers),
    )


def _path(fields: Fields, key: str) -> str | None:
    value = fields.optional_text(key)
    if value is not None and not re.fullmatch(r"[A-Za-z_$][\w$-]*(\.[\w$-]+)*", value):
        fields.fail(key, "expected a dotted field path such as properties.revenue")
    return value or None


def _fail_at(node: Node, path: str, message: str) -> NoReturn:
    fail(node, path, message)


# --- the live playbook's section, parsed once per playbook ---------------------------------------

log = logging.getLogger("leadloop.conversions")
_cache: dict[int, tuple[Playbook, ConversionsConfig]] = {}


def conversions_config(playbook: Playbook | None) -> ConversionsConfig:
    """The parsed section of an applied playbook (cached per playbook object).

    A playbook whose section is invalid gives EMPTY here: validation at apply time
    (`parse_conversions`) is where such errors are reported."""
    if playbook is None:
        return EMPTY
    hit = _cache.get(id(playbook))
    if hit is not None and hit[0] is playbook:
        return hit[1]
    try:
        config = parse_conversions(playbook.sections.get("conversions"))
    except PlaybookError as error:
        log.error("conversions section not used, nothing is forwarded: %s", error)
        config = EMPTY
    if len(_cache) > 64:
        _cache.clear()
    _cache[id(playbook)] = (playbook, config)
    return config


def field_value(data: dict[str, Any], path: str) -> Any:
    """A dotted path into a message (`properties.revenue`, `context.page.url`)."""
    value: Any = data
    for part in _path_parts(path):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@functools.lru_cache(maxsize=1024)
def _path_parts(path: str) -> tuple[str, ...]:
    """The parts of a dotted path: a playbook names a few paths, read for every conversion."""
    return tuple(path.split("."))
