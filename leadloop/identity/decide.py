"""Identity resolution and profile updates: pure functions of the event, what the graph
already holds, and the current profiles.

Invariants:
- two profiles carrying different user ids are never merged automatically (an explicit
  `alias` is the one exception, and it is recorded as such);
- a merge keeps everything: traits (later event time wins per trait, within `MAX_TRAITS`),
  counts, first/last seen, accounts; the shell repoints identities and events to the survivor
  and keeps the merged profile's own state under its id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from leadloop.identity.model import PROFILE_UPDATE_EVENT, Identity, Profile
from leadloop.identity.normalize import normalize_email, normalize_external_id, phone_identity
from leadloop.log.model import EVENT_TYPES, Event


def identities_of(event: Event, default_region: str | None) -> list[Identity]:
    """The identifiers an event carries, user id first (it decides which profile wins)."""
    found: list[Identity] = []
    if event.user_id:
        found.append(Identity("user_id", event.user_id))
    if event.anonymous_id:
        found.append(Identity("anonymous_id", event.anonymous_id))
    # A group call's top-level traits describe the account, not the person.
    traits = event.context.get("traits") if event.type == "group" else event.traits
    if isinstance(traits, dict):
        email = normalize_email(traits.get("email"))
        if email:
            found.append(Identity("email", email))
        phone = phone_identity(traits.get("phone"), default_region)
        if phone:
            found.append(Identity("phone", phone))
    external = event.context.get("externalIds")
    if isinstance(external, list):
        for entry in external[:20]:
            value = normalize_external_id(entry)
            if value:
                found.append(Identity("external_id", value))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Resolution:
    """What to do with an event's identifiers."""

    profile_id: str | None
    """The profile the event belongs to; None means create one (with `new_profile_id`)."""
    new_profile_id: str
    attach: tuple[Identity, ...]
    """Identifiers not yet in the graph, to be given to the profile."""
    merge: tuple[tuple[str, str], ...] = ()
    """(merged profile, reason): fold each into `profile_id`."""
    refused: tuple[tuple[str, str], ...] = ()
    """(other profile, reason): a link that was not made."""


@dataclass
class _Candidate:
    profile_id: str
    user_ids: frozenset[str] = field(default_factory=frozenset)


def resolve_identities(
    event: Event,
    keys: list[Identity],
    owners: Mapping[Identity, str],
    user_ids: Mapping[str, frozenset[str]],
) -> Resolution:
    """`owners` maps the keys already in the graph to their profile; `user_ids` gives each of
    those profiles' user ids."""
    new_id = f"p_{event.seq}"
    alias_keys: list[Identity] = []
    if event.type == "alias" and event.previous_id:
        alias_keys = [
            Identity("user_id", event.previous_id),
            Identity("anonymous_id", event.previous_id),
        ]
    candidates: list[str] = []
    for key in [*keys, *alias_keys]:
        owner = owners.get(key)
        if owner is not None and owner not in candidates:
            candidates.append(owner)
    own_user = event.user_id
    primary: str | None = None
    user_key = Identity("user_id", own_user) if own_user else None
    if user_key is not None and user_key in owners:
        primary = owners[user_key]
    else:
        for candidate in candidates:
            ids = user_ids.get(candidate, frozenset())
            if own_user is None or not ids or own_user in ids:
                primary = candidate
                break
    primary_users = set(user_ids.get(primary, frozenset())) if primary else set()
    if own_user:
        primary_users.add(own_user)
    alias_owners = {owners[k] for k in alias_keys if k in owners}
    merges: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for candidate in candidates:
        if candidate == primary:
            continue
        theirs = user_ids.get(candidate, frozenset())
        if candidate in alias_owners:
            reason = "alias"
            if theirs and primary_users and not theirs <= primary_users:
                reason = "alias of a different user id (explicit)"
            merges.append((candidate, reason))
            primary_users |= theirs
        elif theirs and primary_users and not theirs <= primary_users:
            refused.append((candidate, "different user ids are never merged automatically"))
        else:
            merges.append((candidate, _merge_reason(keys, owners, candidate)))
            primary_users |= theirs
    attach = tuple(k for k in keys if k not in owners)
    if alias_keys and not any(k in owners for k in alias_keys):
        # An unknown previous id is taken to be the anonymous id it usually is.
        attach = (*attach, Identity("anonymous_id", event.previous_id or ""))
    return Resolution(
        profile_id=primary,
        new_profile_id=new_id,
        attach=attach,
        merge=tuple(merges),
        refused=tuple(refused),
    )


def _merge_reason(keys: list[Identity], owners: Mapping[Identity, str], candidate: str) -> str:
    shared = [k for k in keys if owners.get(k) == candidate]
    if shared:
        return f"shared {shared[0].type}"
    return "linked"


def new_profile(profile_id: str, event: Event) -> Profile:
    return Profile(
        id=profile_id,
        workspace_id=event.workspace_id,
        first_seen=event.timestamp,
        last_seen=event.timestamp,
        last_activity=event.timestamp if event.type != "internal" else 0.0,
    )


def merge_profiles(survivor: Profile, merged: Profile) -> Profile:
    """The survivor with `merged` folded in. Traits stay within `MAX_TRAITS` as `identify`
    keeps them: a trait the survivor has takes the later of the two values; the merged
    profile's other traits are added in its own order (the order it got them) while there is
    room. What does not fit is not lost: the merged profile's state stays stored under its id."""
    traits = dict(survivor.traits)
    times = dict(survivor.trait_times)
    for key, value in merged.traits.items():
        when = merged.trait_times.get(key, merged.last_seen)
        if key in traits:
            if when > times.get(key, survivor.last_seen):
                traits[key] = value
                times[key] = when
        elif len(traits) < MAX_TRAITS:
            traits[key] = value
            times[key] = when
    counts = dict(survivor.event_counts)
    for key, n in merged.event_counts.items():
        if key in counts or key in EVENT_TYPES or _names(counts) < MAX_EVENT_NAMES:
            counts[key] = counts.get(key, 0) + n
    accounts = tuple(dict.fromkeys((*survivor.account_ids, *merged.account_ids)))[-MAX_ACCOUNTS:]
    return msgspec.structs.replace(
        survivor,
        traits=traits,
        trait_times=times,
        event_counts=counts,
        first_seen=min(survivor.first_seen, merged.first_seen),
        last_seen=max(survivor.last_seen, merged.last_seen),
        last_activity=max(survivor.last_activity, merged.last_activity),
        account_ids=accounts,
        version=survivor.version + 1,
    )


MAX_TRAITS = 500
MAX_ACCOUNTS = 100
"""Accounts a profile links, the latest kept (the last is the one fit rules read): a client that
sends a fresh `groupId` with every call would otherwise grow the stored profile by one id per
call. Membership itself is kept in full in `account_members`."""
MAX_EVENT_NAMES = 500
"""Event names a profile keeps a count of (its total per type counts every event): a client
that puts ids in event names (`Viewed item 8812`) would otherwise grow the stored profile by
one count per name, rewritten on every event."""


def apply_event(profile: Profile, event: Event) -> Profile:
    """Fold one event into the profile: times, counts, identify traits, account links."""
    counts = dict(profile.event_counts)
    counts[event.type] = counts.get(event.type, 0) + 1
    if event.event:
        name_key = f"{event.type}:{event.event}"
        if name_key in counts or _names(counts) < MAX_EVENT_NAMES:
            counts[name_key] = counts.get(name_key, 0) + 1
    traits = profile.traits
    times = profile.trait_times
    if event.type == "identify":
        traits, times = _set_traits(profile, event.traits, event.timestamp)
    accounts = profile.account_ids
    if event.type == "group" and event.group_id and event.group_id not in accounts:
        accounts = (*accounts, event.group_id)[-MAX_ACCOUNTS:]
    activity = profile.last_activity
    if event.type != "internal":
        activity = max(activity, event.timestamp)
    return msgspec.structs.replace(
        profile,
        traits=traits,
        trait_times=times,
        event_counts=counts,
        first_seen=min(profile.first_seen, event.timestamp),
        last_seen=max(profile.last_seen, event.timestamp),
        last_activity=activity,
        account_ids=accounts,
        version=profile.version + 1,
    )


def _names(counts: Mapping[str, int]) -> int:
    """Event names counted: every key but the totals per type."""
    return len(counts) - sum(1 for kind in EVENT_TYPES if kind in counts)


def account_traits_after(current: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """An account's traits after a group call: the call's values win, and an account keeps at
    most `MAX_TRAITS` of them, as a profile does (a trait it has is still updated)."""
    traits = dict(current)
    for key, value in updates.items():
        if key in traits or len(traits) < MAX_TRAITS:
            traits[key] = value
    return traits


def apply_engine_event(profile: Profile, event: Event) -> Profile:
    """Fold one of the engine's own events into the profile. They are not the person's doing,
    so most leave it as it is (the same object: nothing to write, nothing to refit); a
    journey's update sets its traits and tags, at the update's own event, before any stage
    reads it: that event is where scoring fits them, live and in a replay alike."""
    if event.type != "internal" or event.event != PROFILE_UPDATE_EVENT:
        return profile
    props = event.properties
    updates = dict(props.get("traits") or {})
    add, remove = props.get("add_tags") or [], props.get("remove_tags") or []
    if add or remove:
        tags = profile.traits.get("tags")
        current = [str(t) for t in tags] if isinstance(tags, list) else []
        current = [t for t in current if t not in remove]
        current += [t for t in add if t not in current]
        updates["tags"] = current
    return set_traits(profile, updates, event.timestamp) if updates else profile


def set_traits(profile: Profile, updates: Mapping[str, Any], when: float) -> Profile:
    traits, times = _set_traits(profile, updates, when)
    return msgspec.structs.replace(
        profile, traits=traits, trait_times=times, version=profile.version + 1
    )


def _set_traits(
    profile: Profile, updates: Mapping[str, Any], when: float
) -> tuple[dict[str, Any], dict[str, float]]:
    traits = dict(profile.traits)
    times = dict(profile.trait_times)
    for key, value in updates.items():
        # An older event arriving late must not overwrite a newer value.
        if when >= times.get(key, float("-inf")) and (key in traits or len(traits) < MAX_TRAITS):
            traits[key] = value
            times[key] = when
    return traits, times
