"""The conversions stage's shell: runs after scoring in the processor's batch.

For every event it (1) folds the event's click ids, browser ids, IP, user agent and consent
signal into the profile's match keys (`conversion_keys`), and (2) for every mapping the event or
one of its stage moves matches, builds one `Conversion` per destination and either enqueues it
(an outbox row of kind `conversion`, key `{destination}:{event_id}`) or records why not
(`conversion_log`, status `skipped`). Both happen in the batch transaction, so a replayed
batch enqueues nothing twice, and an id once enqueued is never enqueued again, even long after
the platforms' 48-hour dedup windows (capi.md §6.2).

The outbox payload is hashed here, per platform: raw email, phone and names never reach a row
that leaves the profile store (DESIGN.md, "Raw PII never leaves").
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from leadloop.conversions import normalize as norm
from leadloop.conversions.capture import MatchKeys, capture_keys
from leadloop.conversions.config import ConversionsConfig, Mapping, field_value
from leadloop.conversions.destinations import DestinationConfig
from leadloop.conversions.model import (
    ActionSource,
    Content,
    Conversion,
    MetaDestination,
    Platform,
    UserIdentifiers,
)
from leadloop.conversions.payloads import check_conversion, derive_event_id
from leadloop.identity.model import Profile
from leadloop.log.batch import Batch, Conn, OutboxRow
from leadloop.log.model import Event
from leadloop.scoring.match import condition_holds, page_url, to_number
from leadloop.scoring.service import stage_moves

log = logging.getLogger("leadloop.conversions")
KIND = "conversion"
_keys_decoder = msgspec.json.Decoder(MatchKeys)
_encoder = msgspec.json.Encoder()
_NO_KEYS = MatchKeys()


@dataclass(frozen=True, slots=True)
class LogRow:
    workspace_id: str
    profile_id: str
    destination: str
    event_id: str
    event_name: str
    mapping: str
    status: str
    """`queued` (an outbox row was written) or `skipped` (with `reason`)."""
    reason: str | None
    has_email: bool
    has_phone: bool
    has_click_id: bool
    has_browser_id: bool
    event_time: float


@dataclass
class _Cache:
    keys: dict[tuple[str, str], MatchKeys] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    log: list[LogRow] = field(default_factory=list)


def _cache(batch: Batch) -> _Cache:
    cache = batch.extra.get("conversions")
    if cache is None:
        cache = _Cache()
        batch.extra["conversions"] = cache
    assert isinstance(cache, _Cache)
    return cache


class ConversionStage:
    name = "conversions"

    def __init__(self, config: Callable[[str], ConversionsConfig]) -> None:
        """`config(workspace)` is the parsed `conversions` section of the applied playbook."""
        self._config = config

    # -- processor protocol ----------------------------------------------------------------

    def prefetch(self, batch: Batch, events: list[Event]) -> None:
        cache = _cache(batch)
        by_workspace: dict[str, list[str]] = {}
        for ws, pid in batch.identity.profiles:
            if self._config(ws).mappings:
                by_workspace.setdefault(ws, []).append(pid)
        for ws, ids in by_workspace.items():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = batch.identity.conn.execute(
                    "SELECT profile_id, state FROM conversion_keys WHERE workspace_id = ? "
                    f"AND profile_id IN ({marks})",
                    (ws, *chunk),
                )
                found = {str(pid): _keys_decoder.decode(state) for pid, state in rows}
                for pid in chunk:
                    cache.keys[(ws, pid)] = found.get(pid, _NO_KEYS)

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        config = self._config(event.workspace_id)
        if not config.mappings:
            return profile
        cache = _cache(batch)
        ident = (event.workspace_id, profile.id)
        keys = cache.keys.get(ident)
        if keys is None:
            keys = self._load(batch, ident)
        if event.type != "internal":
            updated = capture_keys(
                keys, event.body, event.timestamp, consent_paths=config.consent.context
            )
            if updated is not keys:
                keys = updated
                cache.dirty.add(ident)
        cache.keys[ident] = keys
        for mapping in config.mappings:
            if mapping.track:
                if (
                    event.type == "track"
                    and event.event in mapping.track
                    and all(condition_holds(event, c) for c in mapping.where)
                ):
                    self._forward(batch, config, mapping, event, profile, keys, None)
                continue
            for move in stage_moves(batch, event):
                if move.profile_id != profile.id:
                    continue
                if mapping.model is not None and move.model != mapping.model:
                    continue
                if (
                    mapping.stage is not None
                    and move.to_stage.casefold() == mapping.stage.casefold()
                ):
                    stage_key = f"{move.model}_{move.to_stage}"
                    self._forward(
                        batch, config, mapping, event, profile, keys, (stage_key, move.at)
                    )
        return profile

    def flush(self, batch: Batch, conn: Conn) -> None:
        cache = batch.extra.get("conversions")
        if not isinstance(cache, _Cache):
            return
        merged = batch.identity.merged
        conn.executemany(
            "INSERT INTO conversion_keys (workspace_id, profile_id, state, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (workspace_id, profile_id) "
            "DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            [
                (ws, pid, _encoder.encode(cache.keys[(ws, pid)]).decode(), batch.now)
                for ws, pid in sorted(cache.dirty)
                if (ws, pid) not in merged
            ],
        )
        conn.executemany(
            "INSERT INTO conversion_log (workspace_id, profile_id, destination, event_id, "
            "event_name, mapping, status, reason, has_email, has_phone, has_click_id, "
            "has_browser_id, event_time, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (workspace_id, destination, event_id) DO NOTHING",
            [
                (
                    r.workspace_id,
                    r.profile_id,
                    r.destination,
                    r.event_id,
                    r.event_name,
                    r.mapping,
                    r.status,
                    r.reason,
                    int(r.has_email),
                    int(r.has_phone),
                    int(r.has_click_id),
                    int(r.has_browser_id),
                    r.event_time,
                    batch.now,
                )
                for r in cache.log
            ],
        )

    # -- internals ------------------------------------------------------------------------

    def _load(self, batch: Batch, ident: tuple[str, str]) -> MatchKeys:
        rows = batch.identity.conn.execute(
            "SELECT state FROM conversion_keys WHERE workspace_id = ? AND profile_id = ?", ident
        )
        return _keys_decoder.decode(rows[0][0]) if rows else _NO_KEYS

    def _forward(
        self,
        batch: Batch,
        config: ConversionsConfig,
        mapping: Mapping,
        event: Event,
        profile: Profile,
        keys: MatchKeys,
        stage: tuple[str, float] | None,
    ) -> None:
        ws = event.workspace_id
        body = event.body
        order_id = _text_at(body, mapping.order_id) if mapping.order_id else _order_id(body)
        if stage is not None:
            stage_key, at = stage
            event_id = _event_id("leadloop", profile.id, stage_key)
        else:
            at = event.timestamp
            explicit = _text_at(body, mapping.event_id) if mapping.event_id else None
            if explicit:
                event_id = explicit
            elif order_id:
                event_id = _event_id("order", order_id, mapping.event_name)
            else:
                event_id = _event_id("event", event.message_id, mapping.id)
        consented, why_not = has_consent(config, profile, keys)
        identities = batch.identity.identities_of_profile(ws, profile.id)
        user = user_identifiers(profile, identities, keys, mapping.identifiers)
        url = page_url(event)
        source = mapping.action_source or _auto_source(stage is not None, user, url)
        ldu = bool(config.ldu_trait and profile.traits.get(config.ldu_trait) is True)
        base = Conversion(
            event_name=mapping.event_name,
            event_time=at,
            event_id=event_id,
            user=user,
            action_source=source,
            value=_value(body, mapping),
            currency=_currency(body, mapping),
            contents=_contents(body, mapping.contents),
            order_id=order_id,
            event_source_url=url if source == "website" else None,
            ad_user_data=True if consented else None,
            ad_personalization=True if consented else None,
            # capi.md §1.4: Meta discards a CRM stage event dated before the lead's creation. The
            # profile's first event is a lower bound of that, so the check never drops a good one.
            lead_created_at=profile.first_seen
            if stage is not None and profile.first_seen
            else None,
            ldu=ldu,
        )
        targets = mapping.destinations or tuple(d.id for d in config.destinations)
        cache = _cache(batch)
        for target in targets:
            dest = config.destination(target)
            if dest is None:
                continue
            conversion, flags = for_destination(base, dest, mapping, config.default_region)
            reason: str | None
            if not consented:
                reason = why_not
            elif dest.destination is None:
                reason = f"destination {dest.id} is disabled: {dest.disabled_reason}"
            else:
                reason = check_conversion(conversion, dest.destination, batch.now)
            cache.log.append(
                LogRow(
                    ws,
                    profile.id,
                    dest.id,
                    event_id,
                    conversion.event_name,
                    mapping.id,
                    "skipped" if reason else "queued",
                    reason,
                    *flags,
                    at,
                )
            )
            if reason:
                continue
            batch.outbox.append(
                OutboxRow(
                    workspace_id=ws,
                    kind=KIND,
                    destination=dest.id,
                    idempotency_key=f"{dest.id}:{event_id}",
                    # The struct itself: the batch encodes payloads with msgspec, which writes it
                    # as the same JSON without building an intermediate dict.
                    payload={"conversion": conversion, "mapping": mapping.id},
                    profile_id=profile.id,
                    not_before=batch.now,
                )
            )


# --- pure helpers ----------------------------------------------------------------------------


def has_consent(config: ConversionsConfig, profile: Profile, keys: MatchKeys) -> tuple[bool, str]:
    """Advertising consent: the latest explicit signal from a consent trait or an event's
    `context.consent` wins; no signal at all is no consent (capi.md §6.4)."""
    if not config.consent.required:
        return True, ""
    signals: list[tuple[float, bool]] = []
    for trait in config.consent.traits:
        value = _as_bool(profile.traits.get(trait))
        if value is not None:
            signals.append((profile.trait_times.get(trait, 0.0), value))
    if keys.consent is not None:
        signals.append((keys.consent_at or 0.0, keys.consent))
    sources = [f"trait {t}" for t in config.consent.traits] + [
        f"context.consent.{p}" for p in config.consent.context
    ]
    if not signals:
        return False, f"no advertising consent ({' or '.join(sources)} is not true)"
    _, latest = max(signals, key=lambda s: s[0])
    if not latest:
        return False, "advertising consent withdrawn"
    return True, ""


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "granted", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "denied", "0"):
        return False
    return None


def _event_id(source: str, object_id: str, stage: str) -> str:
    try:
        return derive_event_id(source, object_id, stage)
    except ValueError:
        # An id with whitespace or an `@` must not reach Google's transactionId (PII rule).
        digest = hashlib.sha256(object_id.encode()).hexdigest()[:32]
        return derive_event_id(source, digest, stage)


def _text_at(body: dict[str, Any], path: str | None) -> str | None:
    if path is None:
        return None
    value = field_value(body, path)
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _order_id(body: dict[str, Any]) -> str | None:
    for path in ("properties.order_id", "properties.orderId", "properties.checkout_id"):
        found = _text_at(body, path)
        if found:
            return found
    return None


def _value(body: dict[str, Any], mapping: Mapping) -> float | None:
    paths = [mapping.value] if mapping.value else []
    for path in paths:
        number = to_number(field_value(body, path))
        if number is not None:
            return number
    return None


def _currency(body: dict[str, Any], mapping: Mapping) -> str | None:
    if mapping.currency:
        found = _text_at(body, mapping.currency)
        if found and len(found) == 3 and found.isalpha():
            return found.upper()
    return mapping.default_currency


def _contents(body: dict[str, Any], path: str | None) -> tuple[Content, ...]:
    """Segment ecommerce `products[]`: `product_id` (or `sku`, `id`), `quantity`, `price`."""
    if path is None:
        return ()
    products = field_value(body, path)
    if not isinstance(products, list):
        return ()
    out: list[Content] = []
    for product in products[:1000]:
        if not isinstance(product, dict):
            continue
        ident = next(
            (
                str(product[k])
                for k in ("product_id", "sku", "id")
                if isinstance(product.get(k), str | int) and str(product[k]).strip()
            ),
            None,
        )
        if ident is None:
            continue
        quantity = to_number(product.get("quantity"))
        price = to_number(product.get("price"))
        name = product.get("name")
        category = product.get("category")
        out.append(
            Content(
                id=ident,
                quantity=max(1, int(quantity)) if quantity is not None else 1,
                item_price=price,
                name=name if isinstance(name, str) else None,
                category=category if isinstance(category, str) else None,
            )
        )
    return tuple(out)


def _auto_source(is_stage: bool, user: UserIdentifiers, url: str | None) -> ActionSource:
    if is_stage:
        return "system_generated"
    # Meta requires user agent and URL for `website` events (capi.md §1.2): claim it only then.
    return "website" if user.user_agent and url else "other"


def _trait(traits: dict[str, Any], *names: str) -> str | None:
    for name in names:
        head, dot, rest = name.partition(".")
        value: Any = traits.get(head)
        if value is None:
            continue
        if dot:
            for part in rest.split("."):
                value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            stripped = value.strip()
            if stripped:
                return stripped
    return None


def user_identifiers(
    profile: Profile,
    identities: list[dict[str, str]],
    keys: MatchKeys,
    wanted: frozenset[str],
) -> UserIdentifiers:
    """The raw identifiers of a profile, limited to the mapping's `identifiers`."""
    by_type: dict[str, str] = {}
    for identity in identities:
        by_type.setdefault(identity["type"], identity["value"])
    traits = profile.traits
    values: dict[str, Any] = {}
    if "email" in wanted:
        values["email"] = by_type.get("email") or _trait(traits, "email")
    if "phone" in wanted:
        # Identity-graph phones are E.164 as `phonenumbers` formats them; a trait is raw text.
        values["phone"] = by_type.get("phone") or _canonical_phone(_trait(traits, "phone"))
    if "name" in wanted:
        first = _trait(traits, "firstName", "first_name")
        last = _trait(traits, "lastName", "last_name")
        full = None if first or last else _trait(traits, "name")
        if full and len(full.split()) == 2:
            first, last = full.split()
        values.update(first_name=first, last_name=last)
    if "address" in wanted:
        values.update(
            city=_trait(traits, "address.city", "city"),
            state=_trait(traits, "address.state", "state"),
            zip=_trait(traits, "address.postalCode", "address.postal_code", "postalCode", "zip"),
            country=_trait(traits, "address.country", "country"),
        )
    if "date_of_birth" in wanted:
        values["date_of_birth"] = _trait(traits, "birthday", "date_of_birth")
    if "gender" in wanted:
        values["gender"] = _trait(traits, "gender")
    if "external_id" in wanted:
        values["external_id"] = by_type.get("user_id")
    if "lead_id" in wanted:
        values["lead_id"] = keys.lead_id
    if "click_ids" in wanted:
        values.update(
            fbc=keys.fbc,
            gclid=keys.gclid,
            gbraid=keys.gbraid,
            wbraid=keys.wbraid,
            ttclid=keys.ttclid,
        )
    if "browser_ids" in wanted:
        values.update(fbp=keys.fbp, ttp=keys.ttp)
    if "ip" in wanted:
        values["ip"] = keys.ip
    if "user_agent" in wanted:
        values["user_agent"] = keys.user_agent
    return UserIdentifiers(**values)


def _h(raw: str | None, normalize: Callable[..., str | None], *args: Any) -> str | None:
    """Hashed once per value (memoised in `normalize.hash_identifier`); digests pass through."""
    return None if raw is None else norm.hash_identifier(raw, normalize, *args)


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _canonical_phone(raw: str | None) -> str | None:
    """An E.164-looking trait made canonical now (`+4402079460958` is `+442079460958`; `+1000000`
    is no number), so that every E.164-shaped phone in `UserIdentifiers` from here on is what
    `phonenumbers` itself would output; other shapes wait for the destination's region."""
    if raw is not None and _E164.fullmatch(raw):
        return norm.normalize_phone_e164(raw)
    return raw


def _phone(
    raw: str, form: Callable[[str, str | None], str | None], region: str | None
) -> str | None:
    """E.164-shaped phones are canonical (`user_identifiers`: the identity graph stores what
    `phonenumbers` formats, traits go through `_canonical_phone`), so the platform form is derived
    directly, skipping a ~15 µs parse; anything else goes through the full normaliser."""
    if _E164.fullmatch(raw):
        return raw[1:] if form is norm.normalize_phone_meta else raw
    return form(raw, region)


def hash_for_platform(
    user: UserIdentifiers, platform: Platform, default_region: str | None, hash_external_id: bool
) -> UserIdentifiers:
    """The identifiers with every PII field replaced by the platform's normalised SHA-256 (the
    builders in `payloads` pass 64-hex values through), and fields the platform does not take
    dropped. Google's region and postal code stay clear text: Google wants them unhashed. The
    Google Ads API takes hashed email and phone only (capi.md §2.3), so no address for it."""
    region = user.phone_region or default_region
    clicks: dict[str, Any] = {
        "gclid": None,
        "gbraid": None,
        "wbraid": None,
        "fbc": None,
        "fbp": None,
        "ttclid": None,
        "ttp": None,
        "lead_id": None,
    }
    if platform == "meta":
        external = user.external_id
        if external is not None:
            external = (
                _h(external, norm.normalize_external_id)
                if hash_external_id
                else norm.normalize_external_id(external)
            )
        country = norm.normalize_country_meta(user.country) if user.country else None
        clicks.update(fbc=user.fbc, fbp=user.fbp, lead_id=user.lead_id)
        return UserIdentifiers(
            email=_h(user.email, norm.normalize_email_meta),
            phone=_h(user.phone, _phone, norm.normalize_phone_meta, region),
            first_name=_h(user.first_name, norm.normalize_name_meta),
            last_name=_h(user.last_name, norm.normalize_name_meta),
            gender=_h(user.gender, norm.normalize_gender_meta),
            city=_h(user.city, norm.normalize_city_meta),
            state=_h(user.state, norm.normalize_state_meta),
            zip=_h(user.zip, norm.normalize_zip_meta, country),
            country=_h(user.country, norm.normalize_country_meta),
            date_of_birth=_h(user.date_of_birth, norm.normalize_date_of_birth_meta),
            external_id=external,
            ip=user.ip,
            user_agent=user.user_agent,
            **clicks,
        )
    if platform in ("google", "google_ads"):
        clicks.update(gclid=user.gclid, gbraid=user.gbraid, wbraid=user.wbraid)
        first = _h(user.first_name, norm.normalize_name_google)
        last = _h(user.last_name, norm.normalize_name_google)
        country = norm.normalize_country_google(user.country) if user.country else None
        postal = norm.normalize_zip_google(user.zip) if user.zip else None
        # The address identifier needs all four parts; otherwise none of them is kept.
        address = platform == "google" and bool(first and last and country and postal)
        return UserIdentifiers(
            email=_h(user.email, norm.normalize_email_google),
            phone=_h(user.phone, _phone, norm.normalize_phone_google, region),
            first_name=first if address else None,
            last_name=last if address else None,
            country=country if address else None,
            zip=postal if address else None,
            ip=user.ip,
            user_agent=user.user_agent,
            **clicks,
        )
    clicks.update(ttclid=user.ttclid, ttp=user.ttp)
    return UserIdentifiers(
        email=_h(user.email, norm.normalize_email_tiktok),
        phone=_h(user.phone, _phone, norm.normalize_phone_tiktok, region),
        external_id=_h(user.external_id, norm.normalize_external_id),
        ip=user.ip,
        user_agent=user.user_agent,
        **clicks,
    )


def for_destination(
    base: Conversion, dest: DestinationConfig, mapping: Mapping, default_region: str | None
) -> tuple[Conversion, tuple[bool, bool, bool, bool]]:
    """The conversion as it is stored for one destination (hashed, platform name), and its
    match-key coverage: (email hash, phone hash, click id, browser id)."""
    target = dest.destination
    region = target.default_region if target is not None else None
    hash_external = target.hash_external_id if isinstance(target, MetaDestination) else True
    user = hash_for_platform(base.user, dest.platform, region or default_region, hash_external)
    conversion = msgspec.structs.replace(
        base, user=user, event_name=mapping.name_for(dest.platform)
    )
    flags = (
        bool(user.email),
        bool(user.phone),
        bool(user.fbc or user.gclid or user.gbraid or user.wbraid or user.ttclid),
        bool(user.fbp or user.ttp),
    )
    return conversion, flags
