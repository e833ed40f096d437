"""The identity graph and profiles, through the real writer and processor, on both backends."""

from __future__ import annotations

from tests.contract.conftest import Harness
from tests.contract.conftest_helpers import ident, track


def test_identify_links_anonymous_history(harness: Harness) -> None:
    harness.send(track("a1", None, "Viewed Pricing"), track("a1", None, "Clicked"))
    harness.send(ident("a1", "u1", email=" Ada@Example.COM ", name="Ada"))
    harness.settle()
    prof = harness.profile("user_id", "u1")
    assert prof is not None
    assert (
        prof == harness.profile("anonymous_id", "a1") == harness.profile("email", "ada@example.com")
    )
    assert {"type": "email", "value": "ada@example.com"} in prof["identities"]
    assert prof["traits"]["name"] == "Ada"
    assert prof["event_counts"]["track"] == 2 and prof["event_counts"]["identify"] == 1


def test_anonymous_profiles_merge_on_shared_email_and_keep_history(harness: Harness) -> None:
    harness.send(ident("a1", None, email="x@example.com", plan="free", ts="2026-01-01T00:00:00Z"))
    harness.send(track("a2", None, "Visit"))
    harness.settle()
    first = harness.profile("anonymous_id", "a1")
    second = harness.profile("anonymous_id", "a2")
    assert first and second and first["id"] != second["id"]
    harness.send(ident("a2", None, email="X@example.com", plan="pro", ts="2026-02-01T00:00:00Z"))
    harness.settle()
    merged = harness.profile("anonymous_id", "a1")
    assert merged == harness.profile("anonymous_id", "a2")
    assert merged is not None
    assert merged["traits"]["plan"] == "pro"  # the later event wins
    assert merged["event_counts"]["identify"] == 2 and merged["event_counts"]["track"] == 1
    assert merged["merged_ids"]
    assert any(a["kind"] == "merge" and "email" in a["reason"] for a in merged["identity_audit"])
    events = harness.sql("SELECT COUNT(*) FROM events WHERE profile_id = ?", merged["id"])
    assert events[0][0] == 3


def test_later_event_time_wins_per_trait_even_when_it_arrives_first(harness: Harness) -> None:
    harness.send(ident("a1", "u1", plan="new", ts="2026-03-01T00:00:00Z"))
    harness.send(ident("a1", "u1", plan="old", city="Oslo", ts="2026-01-01T00:00:00Z"))
    harness.settle()
    prof = harness.profile("user_id", "u1")
    assert prof is not None
    assert prof["traits"]["plan"] == "new" and prof["traits"]["city"] == "Oslo"


def test_two_user_ids_are_never_merged_automatically(harness: Harness) -> None:
    harness.send(ident(None, "u1", email="shared@example.com"))
    harness.send(ident(None, "u2", email="shared@example.com"))
    harness.settle()
    one, two = harness.profile("user_id", "u1"), harness.profile("user_id", "u2")
    assert one and two and one["id"] != two["id"]
    assert any(a["kind"] == "merge_refused" for a in two["identity_audit"])
    assert harness.profile("email", "shared@example.com")["id"] == one["id"]  # type: ignore[index]


def test_alias_links_previous_id(harness: Harness) -> None:
    harness.send(track("anon-7f3a", None, "Visit"))
    harness.send({"type": "alias", "userId": "user-42", "previousId": "anon-7f3a"})
    harness.send(track("anon-7f3a", None, "Later"))
    harness.settle()
    prof = harness.profile("user_id", "user-42")
    assert prof is not None and prof == harness.profile("anonymous_id", "anon-7f3a")
    assert prof["event_counts"]["track"] == 2


def test_alias_of_unknown_previous_id(harness: Harness) -> None:
    harness.send({"type": "alias", "userId": "user-9", "previousId": "anon-new"})
    harness.send(track("anon-new", None, "Visit"))
    harness.settle()
    prof = harness.profile("anonymous_id", "anon-new")
    assert prof is not None and prof["id"] == harness.profile("user_id", "user-9")["id"]  # type: ignore[index]


def test_phone_and_external_ids_link(harness: Harness) -> None:
    harness.send(ident("a1", None, phone="+1 (415) 555-0100"))
    harness.send(
        {
            "type": "track",
            "anonymousId": "a2",
            "event": "Call",
            "context": {
                "traits": {"phone": "+14155550100"},
                "externalIds": [{"id": "c-9", "type": "crm_id"}],
            },
        }
    )
    harness.settle()
    prof = harness.profile("phone", "+14155550100")
    assert prof is not None and prof == harness.profile("anonymous_id", "a2")
    assert harness.profile("external_id", "crm_id:c-9") == prof


def test_group_creates_an_account_and_links_the_profile(harness: Harness) -> None:
    harness.send(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "traits": {"name": "Acme", "employees": 500},
        }
    )
    harness.settle()
    prof = harness.profile("user_id", "u1")
    assert prof is not None and prof["accounts"] == ["acme"]
    assert prof["traits"] == {}  # account traits are not the person's
    rows = harness.sql("SELECT traits FROM accounts WHERE id = 'acme'")
    assert '"employees":500' in rows[0][0]


def test_a_group_call_without_traits_gives_its_account_none_of_the_persons(
    harness: Harness,
) -> None:
    # `context.traits` describe the person (rudder-sdk-js sends them with every call): they
    # were taken for the account's traits when the call had no top-level `traits`.
    harness.send(
        {
            "type": "group",
            "userId": "u1",
            "groupId": "acme",
            "context": {"traits": {"email": "ada@example.com", "name": "Ada"}},
        }
    )
    harness.settle()
    rows = harness.sql("SELECT traits FROM accounts WHERE id = 'acme'")
    assert rows[0][0] == "{}"
    prof = harness.profile("email", "ada@example.com")
    assert prof is not None and prof["accounts"] == ["acme"]


def test_workspaces_are_isolated(harness: Harness) -> None:
    harness.add_workspace("other")
    harness.send(ident(None, "u1", plan="a"))
    harness.send(ident(None, "u1", plan="b"), workspace="other")
    harness.settle()
    mine, theirs = harness.profile("user_id", "u1"), harness.profile("user_id", "u1", "other")
    assert mine and theirs and mine["id"] != theirs["id"]
    assert mine["traits"]["plan"] == "a" and theirs["traits"]["plan"] == "b"


def test_duplicate_message_ids_are_stored_once_per_workspace(harness: Harness) -> None:
    harness.add_workspace("other")
    message = {**track("a1", None, "X"), "messageId": "m-1"}
    harness.send(message)
    harness.send(message)
    harness.send(message, message)
    harness.send(message, workspace="other")
    harness.settle()
    rows = harness.sql("SELECT workspace_id, COUNT(*) FROM events GROUP BY workspace_id ORDER BY 1")
    assert rows == [("default", 1), ("other", 1)]


def test_timers_fire_as_events_in_order(harness: Harness) -> None:
    from leadloop.log.timers import fire_due

    harness.send(ident(None, "u1"))
    harness.settle()
    pid = harness.profile("user_id", "u1")["id"]  # type: ignore[index]
    now = harness.engine.clock.now()

    def schedule(c):  # type: ignore[no-untyped-def]
        c.execute(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) VALUES (?, ?, ?, ?, ?)",
            ("default", "t1", pid, now + 60, '{"name": "Timer Fired", "properties": {}}'),
        )

    harness.engine.writer.submit(schedule).result()
    assert harness.engine.writer.submit(lambda c: fire_due(c, now)).result() == 0
    harness.engine.manual_clock.advance(61)  # type: ignore[union-attr]
    assert harness.engine.timers.fire_now() == 1
    harness.settle()
    prof = harness.profile("user_id", "u1")
    assert prof is not None
    fired = harness.sql("SELECT profile_id, ts FROM events WHERE event = 'Timer Fired'")
    assert fired == [(prof["id"], now + 60)]  # at its due time, on the profile's history
    assert "internal:Timer Fired" not in prof["event_counts"]  # not the person's doing
    assert harness.sql("SELECT COUNT(*) FROM timers") == [(0,)]


def test_timers_due_at_the_same_instant_fire_in_the_order_they_were_scheduled(
    harness: Harness,
) -> None:
    """Among timers due at the same instant, the batch that scheduled them and their place in
    it decide the order of their events in the log, not their keys (hashes in practice): the
    wake-ups reach the processor in the order of the events that scheduled them."""
    from leadloop.identity.service import IdentityBatch
    from leadloop.log.batch import Batch, Timer

    harness.send(ident(None, "u1"))
    harness.settle()
    pid = harness.profile("user_id", "u1")["id"]  # type: ignore[index]
    now = harness.engine.clock.now()
    due = now + 60
    # Keys sort in the reverse of the order they are scheduled in.
    scheduled = [["k9", "k8", "k7"], ["k6", "k5"], ["k4", "k3", "k2", "k1"]]

    for keys in scheduled:

        def write(c, keys=keys):  # type: ignore[no-untyped-def]
            batch = Batch(identity=IdentityBatch(conn=c), now=now)
            for key in keys:
                batch.schedule(Timer("default", key, pid, due, "Timer Fired", {"k": key}))
            batch.flush(c)

        harness.engine.writer.submit(write).result()
    harness.engine.manual_clock.advance(61)  # type: ignore[union-attr]
    assert harness.engine.timers.fire_now() == 9
    fired = harness.sql("SELECT message_id FROM events WHERE event = 'Timer Fired' ORDER BY seq")
    assert [m.split(":")[1] for (m,) in fired] == [k for keys in scheduled for k in keys]


def test_identities_loaded_in_bulk_are_those_read_one_profile_at_a_time(
    harness: Harness,
) -> None:
    """`load_identities` (a stage's prefetch) gives `identities_of_profile` the same answer as
    its query per profile, for profiles with several, one or (unknown ids) no identities."""
    from leadloop.identity.service import IdentityBatch

    harness.send(ident("a1", "u1", email="ana@example.com", phone="+1 (415) 555-0100"))
    harness.send(ident("a2", None))
    harness.send(ident(None, "u3", email="bo@example.com"))
    harness.settle()
    pids = [
        harness.profile(kind, value)["id"]  # type: ignore[index]
        for kind, value in (("user_id", "u1"), ("anonymous_id", "a2"), ("user_id", "u3"))
    ]
    pids.append("no-such-profile")

    def read(c, bulk: bool):  # type: ignore[no-untyped-def]
        batch = IdentityBatch(conn=c)
        if bulk:
            batch.load_identities("default", pids)
            assert set(batch.stored_identities) == {("default", p) for p in pids}
        return [batch.identities_of_profile("default", p) for p in pids]

    one_by_one = harness.engine.read_sync(lambda c: read(c, False))
    assert harness.engine.read_sync(lambda c: read(c, True)) == one_by_one
    assert {"type": "email", "value": "ana@example.com"} in one_by_one[0]
    assert {"type": "phone", "value": "+14155550100"} in one_by_one[0]
    assert one_by_one[1] == [{"type": "anonymous_id", "value": "a2"}]
    assert one_by_one[3] == []


def test_a_merge_keeps_the_profile_within_the_trait_cap(harness: Harness) -> None:
    from leadloop.identity.decide import MAX_TRAITS

    first = {"email": "cap@example.com"} | {f"a{i}": i for i in range(300)}
    harness.send(ident("a1", None, ts="2026-01-01T00:00:00Z", **first))
    harness.send(ident("a2", None, ts="2026-01-02T00:00:00Z", **{f"b{i}": i for i in range(300)}))
    harness.settle()
    gone = harness.profile("anonymous_id", "a1")
    assert gone is not None
    harness.send(ident("a2", None, email="cap@example.com", ts="2026-01-03T00:00:00Z"))
    harness.settle()
    merged = harness.profile("anonymous_id", "a1")
    assert merged is not None and merged == harness.profile("anonymous_id", "a2")
    traits = merged["traits"]
    assert len(traits) == MAX_TRAITS
    # The survivor (a2's profile) keeps its own; a1's fill up to the cap in their order.
    assert all(f"b{i}" in traits for i in range(300))
    assert traits["email"] == "cap@example.com" and "a198" in traits and "a199" not in traits
    # Nothing is lost: the merged profile's own state stays stored under its id.
    (state,) = harness.sql("SELECT state FROM profiles WHERE id = ?", gone["id"])[0]
    assert '"a299":299' in state.replace(" ", "")
