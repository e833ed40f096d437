"""The identity graph's pure decisions."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace

from leadloop.identity import decide
from leadloop.identity.model import Identity, Profile
from leadloop.log.model import Event


def event(seq: int = 1, type_: str = "track", ts: float = 100.0, **body: Any) -> Event:
    return Event(
        seq=seq,
        workspace_id="w",
        message_id=f"m{seq}",
        type=type_,
        event=body.pop("event", None),
        user_id=body.get("userId"),
        anonymous_id=body.get("anonymousId"),
        group_id=body.get("groupId"),
        previous_id=body.get("previousId"),
        timestamp=ts,
        received_at=ts,
        body=body,
    )


def test_identities_are_normalised_and_user_id_comes_first() -> None:
    e = event(
        anonymousId="a1",
        userId="u1",
        context={
            "traits": {"email": "  Ada@Example.COM ", "phone": "+44 20 7946 0958"},
            "externalIds": [{"id": "c-1", "type": "crm"}, {"id": 5}],
        },
    )
    assert decide.identities_of(e, None) == [
        Identity("user_id", "u1"),
        Identity("anonymous_id", "a1"),
        Identity("email", "ada@example.com"),
        Identity("phone", "+442079460958"),
        Identity("external_id", "crm:c-1"),
    ]


def test_a_national_phone_needs_a_default_region() -> None:
    e = event(anonymousId="a", context={"traits": {"phone": "(415) 555-0100"}})
    assert Identity("phone", "+14155550100") not in decide.identities_of(e, None)
    assert Identity("phone", "+14155550100") in decide.identities_of(e, "US")


def test_a_phone_with_an_extension_is_no_identifier() -> None:
    """Its E.164 form drops the extension, so everyone reached through one switchboard shared
    the identity, and a second lead of the same company was merged into the first."""
    for phone in (
        "+1 650-253-0000 ext. 123",
        "+1 650 253 0000 x124",
        "(650) 253-0000 #5",
        "+16502530000;ext=9",
        "+1 650 253 0000,,12",
    ):
        e = event(anonymousId="a", context={"traits": {"phone": phone}})
        assert [k for k in decide.identities_of(e, "US") if k.type == "phone"] == [], phone
    plain = event(anonymousId="a", context={"traits": {"phone": "+1 (650) 253-0000"}})
    assert Identity("phone", "+16502530000") in decide.identities_of(plain, "US")


def test_group_traits_are_the_accounts_not_the_persons() -> None:
    e = event(type_="group", userId="u", groupId="g", traits={"email": "billing@acme.test"})
    assert decide.identities_of(e, None) == [Identity("user_id", "u")]


def test_unknown_identities_create_a_profile() -> None:
    e = event(seq=7, anonymousId="a")
    keys = decide.identities_of(e, None)
    r = decide.resolve_identities(e, keys, {}, {})
    assert r.profile_id is None and r.new_profile_id == "p_7" and r.attach == tuple(keys)


def test_shared_email_merges_anonymous_profiles() -> None:
    e = event(anonymousId="a2", context={"traits": {"email": "x@y.test"}})
    keys = decide.identities_of(e, None)
    owners = {Identity("email", "x@y.test"): "p_1", Identity("anonymous_id", "a2"): "p_2"}
    r = decide.resolve_identities(e, keys, owners, {"p_1": frozenset(), "p_2": frozenset()})
    assert r.profile_id == "p_2" and r.merge == (("p_1", "shared email"),)


def test_two_user_ids_are_refused_not_merged() -> None:
    e = event(userId="u2", context={"traits": {"email": "x@y.test"}})
    keys = decide.identities_of(e, None)
    owners = {Identity("email", "x@y.test"): "p_1"}
    r = decide.resolve_identities(e, keys, owners, {"p_1": frozenset({"u1"})})
    assert r.profile_id is None and r.merge == ()
    assert r.refused and r.refused[0][0] == "p_1"
    assert Identity("email", "x@y.test") not in r.attach


def test_alias_is_an_explicit_merge_and_says_so() -> None:
    e = event(type_="alias", userId="new", previousId="old")
    keys = decide.identities_of(e, None)
    owners = {Identity("user_id", "new"): "p_2", Identity("user_id", "old"): "p_1"}
    users = {"p_1": frozenset({"old"}), "p_2": frozenset({"new"})}
    r = decide.resolve_identities(e, keys, owners, users)
    assert r.profile_id == "p_2"
    assert r.merge == (("p_1", "alias of a different user id (explicit)"),)


def profile(pid: str, **traits: tuple[Any, float]) -> Profile:
    return Profile(
        id=pid,
        workspace_id="w",
        traits={k: v for k, (v, _) in traits.items()},
        trait_times={k: t for k, (_, t) in traits.items()},
        first_seen=min((t for _, t in traits.values()), default=0.0),
        last_seen=max((t for _, t in traits.values()), default=0.0),
        last_activity=0.0,
    )


def test_merge_keeps_everything_and_the_later_trait_wins() -> None:
    a = profile("p_1", plan=("free", 10.0), city=("Oslo", 5.0))
    b = profile("p_2", plan=("pro", 20.0), title=("VP", 1.0))
    merged = decide.merge_profiles(a, b)
    assert merged.traits == {"plan": "pro", "city": "Oslo", "title": "VP"}
    assert merged.first_seen == 1.0 and merged.last_seen == 20.0


@given(
    st.dictionaries(st.sampled_from("abcd"), st.tuples(st.integers(), st.floats(0, 100))),
    st.dictionaries(st.sampled_from("abcd"), st.tuples(st.integers(), st.floats(0, 100))),
)
def test_merge_picks_the_same_values_whichever_side_survives(
    left: dict[str, tuple[int, float]], right: dict[str, tuple[int, float]]
) -> None:
    a, b = profile("p_1", **left), profile("p_2", **right)
    one, two = decide.merge_profiles(a, b), decide.merge_profiles(b, a)
    for key in set(left) | set(right):
        if key in left and key in right and left[key][1] == right[key][1]:
            continue  # a tie: the survivor keeps its own
        assert one.traits[key] == two.traits[key]


def test_a_late_event_does_not_overwrite_a_newer_trait() -> None:
    p = profile("p_1", plan=("pro", 50.0))
    older = event(type_="identify", ts=10.0, userId="u", traits={"plan": "free", "city": "Rome"})
    updated = decide.apply_event(p, older)
    assert updated.traits == {"plan": "pro", "city": "Rome"}
    assert updated.event_counts == {"identify": 1}


def test_the_engines_own_events_leave_the_profile_but_a_journey_update_sets_traits_and_tags() -> (
    None
):
    """Applied before the stages read the event, so scoring fits the update at its own event;
    a timer or an emitted event is not the person's doing and leaves the very same profile."""
    p = profile("p_1", plan=("free", 10.0), tags=(["trial", "new"], 10.0))
    for name in ("Journey Wake", "Lead Qualified"):
        assert decide.apply_engine_event(p, event(type_="internal", event=name)) is p
    update = event(
        type_="internal",
        ts=20.0,
        event="Journey Profile Updated",
        properties={"traits": {"plan": "pro"}, "add_tags": ["vip"], "remove_tags": ["trial"]},
    )
    updated = decide.apply_engine_event(p, update)
    assert updated.traits == {"plan": "pro", "tags": ["new", "vip"]}
    assert updated.trait_times == {"plan": 20.0, "tags": 20.0}
    assert updated.event_counts == p.event_counts and updated.last_activity == p.last_activity
    # An update older than the trait's value (a late step) does not overwrite it.
    late = replace(update, timestamp=5.0)
    assert decide.apply_engine_event(p, late).traits == {"plan": "free", "tags": ["trial", "new"]}


def test_a_profile_keeps_counts_of_at_most_max_event_names_and_every_type_total() -> None:
    """A client that puts ids in event names (`Viewed item 8812`) made the stored profile grow
    by one count per name, rewritten on every event."""
    from leadloop.identity.decide import MAX_EVENT_NAMES, apply_event, new_profile
    from leadloop.log.model import Event

    def track(i: int, name: str) -> Event:
        return Event(
            seq=i, workspace_id="w", message_id=f"m{i}", type="track", event=name,
            user_id="u", timestamp=float(i), received_at=float(i), body={},
        )  # fmt: skip

    profile = new_profile("p", track(0, "First"))
    for i in range(MAX_EVENT_NAMES + 100):
        profile = apply_event(profile, track(i, f"Viewed item {i}"))
    profile = apply_event(profile, track(10**6, "Viewed item 0"))  # a name already counted
    named = [k for k in profile.event_counts if k.startswith("track:")]
    assert len(named) == MAX_EVENT_NAMES
    assert profile.event_counts["track"] == MAX_EVENT_NAMES + 101
    assert profile.event_counts["track:Viewed item 0"] == 2


def test_an_account_keeps_at_most_max_traits_and_still_updates_the_ones_it_has() -> None:
    from leadloop.identity.decide import MAX_TRAITS, account_traits_after

    traits = account_traits_after({}, {f"t{i}": i for i in range(MAX_TRAITS + 50)})
    assert len(traits) == MAX_TRAITS
    again = account_traits_after(traits, {"t0": "new", "extra": 1})
    assert again["t0"] == "new" and "extra" not in again and len(again) == MAX_TRAITS


def test_a_merge_keeps_the_cap_on_event_names() -> None:
    from leadloop.identity.decide import MAX_EVENT_NAMES, merge_profiles
    from leadloop.identity.model import Profile

    def person(pid: str, prefix: str) -> Profile:
        counts = {"track": MAX_EVENT_NAMES}
        counts.update({f"track:{prefix}{i}": 1 for i in range(MAX_EVENT_NAMES)})
        return Profile(
            id=pid, workspace_id="w", first_seen=0.0, last_seen=0.0, last_activity=0.0,
            event_counts=counts,
        )  # fmt: skip

    merged = merge_profiles(person("a", "x"), person("b", "y"))
    assert len(merged.event_counts) == MAX_EVENT_NAMES + 1
    assert merged.event_counts["track"] == 2 * MAX_EVENT_NAMES


def test_an_empty_top_level_traits_object_does_not_hide_context_traits() -> None:
    # Segment's Python client always sends `"traits": {}` (`traits = traits or {}`), so
    # `analytics.identify("u", context={"traits": {...}})` arrives with both: the person's
    # traits are the context's, as for rudder-sdk-python's identify, which has no `traits`.
    e = event(
        type_="identify",
        userId="u",
        traits={},
        context={"traits": {"email": "Ada@Example.com", "plan": "pro"}},
    )
    assert Identity("email", "ada@example.com") in decide.identities_of(e, None)
    updated = decide.apply_event(profile("p_1"), e)
    assert updated.traits == {"email": "Ada@Example.com", "plan": "pro"}


def test_top_level_traits_win_over_context_traits_when_they_say_anything() -> None:
    e = event(
        type_="identify",
        userId="u",
        traits={"plan": "pro"},
        context={"traits": {"email": "ada@example.com"}},
    )
    assert decide.apply_event(profile("p_1"), e).traits == {"plan": "pro"}
