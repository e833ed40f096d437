"""Match keys from events: click ids, browser ids, IP and user agent, and advertising consent.

Pure: `capture_keys(keys, body, at)` folds one event's message into a profile's `MatchKeys`, so
later conversions (a CRM stage change days after the click) can still carry the `fbc`, `gclid`
or `_ttp` the person arrived with. Where they come from (research/capi.md §1.3, §3, §6b):

* page URLs (`properties.url`, `context.page.url`, `context.page.search`, `properties.search`):
  `fbclid`, `gclid`, `gbraid`, `wbraid`, `ttclid` query parameters;
* `context.campaign` (some SDKs copy click ids there) and event properties (CRM webhooks send
  `gclid` or `hs_google_click_id` as deal or contact properties);
* cookies passed as properties or in a `cookies` object: `_fbp`, `_fbc`, `_ttp`, `ttclid`.

`fbclid` becomes `fbc` = `fb.1.<capture ms>.<fbclid>` (§1.3); a new `fbclid` replaces the `fbc`
(Stape's rule), the same one keeps its first capture time. IP and user agent come from the
latest event that carries a user agent (a browser's), never from server-side webhooks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard
from urllib.parse import parse_qs, urlsplit

import msgspec

CLICK_PARAMS = ("fbclid", "gclid", "gbraid", "wbraid", "ttclid")
_ALIASES: dict[str, tuple[str, ...]] = {
    "fbclid": ("fbclid",),
    "gclid": ("gclid", "hs_google_click_id"),
    "gbraid": ("gbraid",),
    "wbraid": ("wbraid",),
    "ttclid": ("ttclid",),
    "fbc": ("fbc", "_fbc"),
    "fbp": ("fbp", "_fbp"),
    "ttp": ("ttp", "_ttp"),
    "lead_id": ("lead_id", "leadgen_id"),
}
_ALL_ALIASES = frozenset(alias for aliases in _ALIASES.values() for alias in aliases)
_FB_COOKIE = re.compile(r"fb\.[0-9]+\.[0-9]+\.\S+")  # Meta writes these ids in ASCII
_LEAD_ID = re.compile(r"[0-9]{15,16}")
_MAX_LEN = 500
"""Longer values are not ids: a pasted page, a bug. Dropped rather than stored and sent."""


class MatchKeys(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a profile carries for matching, each with the time it was captured."""

    fbc: str | None = None
    fbc_at: float | None = None
    fbp: str | None = None
    fbp_at: float | None = None
    gclid: str | None = None
    gclid_at: float | None = None
    gbraid: str | None = None
    gbraid_at: float | None = None
    wbraid: str | None = None
    wbraid_at: float | None = None
    ttclid: str | None = None
    ttclid_at: float | None = None
    ttp: str | None = None
    ttp_at: float | None = None
    lead_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    web_at: float | None = None
    """When IP and user agent were seen (the latest browser event)."""
    consent: bool | None = None
    consent_at: float | None = None
    """Advertising consent from event context (`context.consent...`), latest signal wins."""


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    # Decoded JSON holds plain dicts: `type(...) is dict` answers at once, where the ABC check
    # costs about half a microsecond, and this runs a dozen times for every event, most often
    # on a part the message does not have (no `context`, no `campaign`): None.
    return type(value) is dict or (value is not None and isinstance(value, Mapping))


def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not _is_mapping(value):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return stripped if stripped and len(stripped) <= _MAX_LEN and " " not in stripped else None


def _query_of(url: Any) -> str:
    """The query string of a page URL or a `search` (`?a=1`); empty when there is none."""
    if not isinstance(url, str) or not url:
        return ""
    try:
        return urlsplit(url).query if "?" in url or "://" in url else url.lstrip("?")
    except ValueError:
        return ""


def _query_params(query: str) -> dict[str, str]:
    if "=" not in query:  # no parameter with a value: parse_qs would find nothing
        return {}
    try:
        parsed = parse_qs(query)
    except ValueError:
        return {}
    return {key: values[-1] for key, values in parsed.items() if values}


def found_keys(body: Mapping[str, Any]) -> dict[str, str]:
    """Every match key one message carries, by name (`fbclid`, `fbc`, `gclid`, `ttp`, ...).

    Later sources override earlier ones: URLs, then campaign, then properties and cookies (an
    explicit cookie value is more precise than a reconstruction)."""
    properties = body.get("properties")
    context = body.get("context")
    props = properties if _is_mapping(properties) else {}
    ctx = context if _is_mapping(context) else {}
    page = ctx.get("page")
    on_page = page if _is_mapping(page) else {}
    sources: list[Mapping[str, Any]] = []
    queries = [
        _query_of(url)
        for url in (
            props.get("url"),
            props.get("search"),
            on_page.get("url"),
            on_page.get("search"),
        )
    ]
    for i, query in enumerate(queries):
        # A page's URL and search usually repeat one query (in properties and in context):
        # parsed once, at its last place, since a later source overrides an earlier one and
        # an identical earlier one can change nothing.
        if query and query not in queries[i + 1 :]:
            sources.append(_query_params(query))
    campaign = ctx.get("campaign")
    if _is_mapping(campaign):
        sources.append(campaign)
    sources.append(props)
    for cookies in (props.get("cookies"), ctx.get("cookies")):
        if _is_mapping(cookies):
            sources.append(cookies)
    found: dict[str, str] = {}
    for source in sources:
        if _ALL_ALIASES.isdisjoint(source):  # most messages carry none: skip the 13 lookups
            continue
        for name, aliases in _ALIASES.items():
            for alias in aliases:
                value = _text(source.get(alias))
                if value is not None:
                    found[name] = value
    return found


def make_fbc(fbclid: str, at: float) -> str:
    """`fb.{subdomainIndex}.{creationTimeMs}.{fbclid}`; the fbclid is kept exactly (§1.3)."""
    return f"fb.1.{int(at * 1000)}.{fbclid}"


def _fbclid_of(fbc: str | None) -> str | None:
    if fbc is None:
        return None
    parts = fbc.split(".", 3)
    return parts[3] if len(parts) == 4 else None


def as_consent(value: Any) -> bool | None:
    """A consent value as True (granted), False (denied) or None (no signal): JSON booleans,
    0 and 1, and the texts `true`/`false`, `yes`/`no`, `granted`/`denied`, `1`/`0`, as CRMs
    (HubSpot's properties are all text), forms and Google Consent Mode write them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):  # bool was taken above
        # As the texts "1" and "0" are: a form or CSV import writes 0 for "no" (a spreadsheet
        # 0.0), and ignoring it forwarded a refusal as "no signal" under `required: false`.
        return bool(value == 1)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "yes", "granted", "1"):
            return True
        if text in ("false", "no", "denied", "0"):
            return False
    return None


def consent_signal(body: Mapping[str, Any], paths: tuple[str, ...]) -> bool | None:
    """The advertising consent an event states under `context.consent`, if it states one.

    `paths` are relative to `context.consent` (`categoryPreferences.advertising`); the first
    path holding a consent value (`as_consent`) wins."""
    context = body.get("context")
    consent = context.get("consent") if _is_mapping(context) else None
    if not _is_mapping(consent):
        return None
    for path in paths:
        value = as_consent(_dig(consent, path))
        if value is not None:
            return value
    return None


def capture_keys(
    keys: MatchKeys,
    body: Mapping[str, Any],
    at: float,
    *,
    consent_paths: tuple[str, ...] = ("categoryPreferences.advertising",),
) -> MatchKeys:
    """`keys` updated with what this message carries; the same object when nothing changes."""
    found = found_keys(body)
    changes: dict[str, Any] = {}
    if found:  # most messages carry no click id or cookie
        fbc = found.get("fbc")
        if fbc is not None and not _FB_COOKIE.fullmatch(fbc):
            fbc = None
        fbclid = found.get("fbclid")
        if fbclid is not None and fbc is None and _fbclid_of(keys.fbc) != fbclid:
            fbc = make_fbc(fbclid, at)
        if fbc is not None and fbc != keys.fbc:
            changes.update(fbc=fbc, fbc_at=at)
        fbp = found.get("fbp")
        if fbp is not None and _FB_COOKIE.fullmatch(fbp) and fbp != keys.fbp:
            changes.update(fbp=fbp, fbp_at=at)
        for name in ("gclid", "gbraid", "wbraid", "ttclid", "ttp"):
            value = found.get(name)
            if value is not None and value != getattr(keys, name):
                changes.update({name: value, f"{name}_at": at})
        lead_id = found.get("lead_id")
        if lead_id is not None and _LEAD_ID.fullmatch(lead_id) and lead_id != keys.lead_id:
            changes["lead_id"] = lead_id
    context = body.get("context")
    ctx = context if _is_mapping(context) else {}
    agent = ctx.get("userAgent")
    if isinstance(agent, str) and agent.strip() and (keys.web_at is None or at >= keys.web_at):
        ip = ctx.get("ip")
        changes.update(
            user_agent=agent.strip()[:_MAX_LEN],
            ip=ip.strip() if isinstance(ip, str) and ip.strip() else keys.ip,
            web_at=at,
        )
    consent = consent_signal(body, consent_paths)
    if consent is not None and (keys.consent_at is None or at >= keys.consent_at):
        changes.update(consent=consent, consent_at=at)
    if not changes:
        return keys
    return msgspec.structs.replace(keys, **changes)


_STAMPED = ("fbc", "fbp", "gclid", "gbraid", "wbraid", "ttclid", "ttp")


def merge_keys(survivor: MatchKeys, absorbed: MatchKeys) -> MatchKeys:
    """The keys of two profiles found to be one person: each click id and cookie, the browser
    (IP and user agent) and the consent signal from whichever side captured it later; the
    survivor's where the times are equal or unknown. A lead id is kept where one side has it."""
    changes: dict[str, Any] = {}
    for name in _STAMPED:
        at = f"{name}_at"
        if _later(
            getattr(absorbed, name),
            getattr(absorbed, at),
            getattr(survivor, name),
            getattr(survivor, at),
        ):
            changes.update({name: getattr(absorbed, name), at: getattr(absorbed, at)})
    if _later(absorbed.user_agent, absorbed.web_at, survivor.user_agent, survivor.web_at):
        changes.update(ip=absorbed.ip, user_agent=absorbed.user_agent, web_at=absorbed.web_at)
    if _later(absorbed.consent, absorbed.consent_at, survivor.consent, survivor.consent_at):
        changes.update(consent=absorbed.consent, consent_at=absorbed.consent_at)
    if survivor.lead_id is None and absorbed.lead_id is not None:
        changes["lead_id"] = absorbed.lead_id
    return msgspec.structs.replace(survivor, **changes) if changes else survivor


def _later(value: Any, at: float | None, other: Any, other_at: float | None) -> bool:
    """Whether `value` (captured at `at`) should replace `other` (captured at `other_at`)."""
    if value is None:
        return False
    if other is None:
        return True
    return at is not None and (other_at is None or at > other_at)


def has_click_id(keys: MatchKeys) -> bool:
    return bool(keys.fbc or keys.gclid or keys.gbraid or keys.wbraid or keys.ttclid)


def has_browser_id(keys: MatchKeys) -> bool:
    return bool(keys.fbp or keys.ttp)
