"""A profile links at most `MAX_ACCOUNTS` accounts, as it counts at most `MAX_EVENT_NAMES` event
names: a client that sends a fresh `groupId` with every call (a session or order id) grew the
stored profile by one id per call, and the whole list is rewritten with every later event."""

from __future__ import annotations

from leadloop.identity.decide import MAX_ACCOUNTS, apply_event, merge_profiles, new_profile
from leadloop.identity.model import Profile
from leadloop.log.model import Event


def group(i: int, gid: str) -> Event:
    return Event(
        seq=i, workspace_id="w", message_id=f"m{i}", type="group", group_id=gid,
        user_id="u", timestamp=float(i), received_at=float(i), body={},
    )  # fmt: skip


def test_a_profile_keeps_its_latest_accounts_up_to_the_cap() -> None:
    profile = new_profile("p", group(0, "g0"))
    for i in range(MAX_ACCOUNTS + 50):
        profile = apply_event(profile, group(i, f"g{i}"))
    assert len(profile.account_ids) == MAX_ACCOUNTS
    # The latest is last: fit rules read the traits of the profile's most recent account.
    assert profile.account_ids[-1] == f"g{MAX_ACCOUNTS + 49}"
    assert profile.account_ids[0] == "g50"
    again = apply_event(profile, group(10**6, "g60"))  # one it has: nothing moves or goes
    assert again.account_ids == profile.account_ids


def test_a_merge_keeps_the_cap_on_accounts() -> None:
    def person(pid: str, prefix: str) -> Profile:
        return Profile(
            id=pid, workspace_id="w", first_seen=0.0, last_seen=0.0, last_activity=0.0,
            account_ids=tuple(f"{prefix}{i}" for i in range(MAX_ACCOUNTS)),
        )  # fmt: skip

    merged = merge_profiles(person("a", "x"), person("b", "y"))
    assert len(merged.account_ids) == MAX_ACCOUNTS
    assert merged.account_ids[-1] == f"y{MAX_ACCOUNTS - 1}"
