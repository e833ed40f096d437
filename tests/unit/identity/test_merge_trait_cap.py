"""A merge holds the profile to `MAX_TRAITS`, as `identify` does: two profiles of 300 traits
each made one of 600, rewritten on every later event and past the cap for good."""

from __future__ import annotations

from leadloop.identity.decide import MAX_TRAITS, merge_profiles
from leadloop.identity.model import Profile


def person(pid: str, traits: dict[str, tuple[object, float]]) -> Profile:
    return Profile(
        id=pid,
        workspace_id="w",
        traits={k: v for k, (v, _) in traits.items()},
        trait_times={k: t for k, (_, t) in traits.items()},
        first_seen=0.0,
        last_seen=100.0,
        last_activity=0.0,
    )


def test_the_survivors_traits_stay_and_the_merged_ones_fill_up_to_the_cap_in_their_order() -> None:
    survivor = person("a", {f"a{i}": (i, 1.0) for i in range(300)})
    merged = person("b", {f"b{i}": (i, 2.0) for i in range(300)})
    out = merge_profiles(survivor, merged)
    assert len(out.traits) == MAX_TRAITS
    assert list(out.traits) == [f"a{i}" for i in range(300)] + [f"b{i}" for i in range(200)]
    assert set(out.trait_times) == set(out.traits)


def test_a_full_survivor_still_takes_later_values_of_the_traits_it_has() -> None:
    survivor = person("a", {f"t{i}": ("old", 1.0) for i in range(MAX_TRAITS)})
    merged = person("b", {"t7": ("new", 5.0), "t8": ("older", 0.5), "extra": ("x", 9.0)})
    out = merge_profiles(survivor, merged)
    assert len(out.traits) == MAX_TRAITS and "extra" not in out.traits
    assert "extra" not in out.trait_times
    assert out.traits["t7"] == "new" and out.trait_times["t7"] == 5.0
    assert out.traits["t8"] == "old"


def test_a_survivor_already_over_the_cap_loses_nothing_and_gains_no_new_trait() -> None:
    # Stored by an earlier version (a merge before this fix): its own traits are not cut.
    survivor = person("a", {f"t{i}": (i, 1.0) for i in range(MAX_TRAITS + 20)})
    merged = person("b", {"t0": ("new", 5.0), "extra": ("x", 9.0)})
    out = merge_profiles(survivor, merged)
    assert len(out.traits) == MAX_TRAITS + 20
    assert out.traits["t0"] == "new" and "extra" not in out.traits


def test_the_cap_does_not_depend_on_how_the_merged_traits_are_timed() -> None:
    # Below the cap every trait is carried over, later event time winning, as before.
    survivor = person("a", {"plan": ("free", 10.0), "city": ("Oslo", 5.0)})
    merged = person("b", {"plan": ("pro", 20.0), "title": ("VP", 1.0)})
    out = merge_profiles(survivor, merged)
    assert out.traits == {"plan": "pro", "city": "Oslo", "title": "VP"}
