"""A `best_time` wait through the processor on both backends: it waits for the hour of the day
(in the profile's time zone) when the profile has opened and clicked before, falls back to the
population's best hour without history, explores a stable share of waits, and reads only the
engagement the log held before the event that reached it."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.channels import records
from leadloop.journeys.hashing import stable_fraction
from leadloop.personalization.send_time import EXPLORE
from tests.contract.conftest import Harness
from tests.contract.journeys_helpers import DAY, HOUR, START, flows, timers, utc

pytestmark = pytest.mark.usefixtures("channels_env")

FRAGMENT = """
journeys:
  templates:
    email: [digest]
  flows:
    - id: digest
      entry: { event: Go }
      steps:
        - { id: best, type: wait, best_time: 24h, next: mail }
        - { id: mail, type: send, channel: email, template: digest }
"""


def opened(h: Harness, pid: str, at: float, n: int, *, automated: bool = False) -> None:
    def write(c: object) -> None:
        props = {"message_id": f"m{n}", "channel": "email", "automated": automated}
        name = f"open-{pid}-{n}"
        records.emit(c, "default", name, "Email Opened", pid, props, at, at)  # type: ignore[arg-type]

    h.engine.writer.submit(write).result()


def person(h: Harness, user: str) -> str:
    traits = {"timezone": "Europe/Berlin", "email": f"{user}@x.test"}
    h.send({"type": "identify", "userId": user, "traits": traits})
    h.settle()
    found = h.profile("user_id", user)
    assert found is not None
    return str(found["id"])


def explores(h: Harness, pid: str) -> bool:
    (iid,) = h.sql("SELECT id FROM journey_instances WHERE profile_id = ?", pid)[0]
    return stable_fraction("best_time", f"{iid}:best:1") < EXPLORE


def test_the_wait_ends_at_the_profiles_habitual_hour(backend_url: str, tmp_path: Path) -> None:
    with flows(backend_url, tmp_path, FRAGMENT) as h:
        # START is 09:00 in Berlin. Twelve evenings of opens around 19:00 Berlin (18:00 UTC),
        # and two an image proxy fetched at 06:00, which do not count.
        habitual = [f"eve{i}" for i in range(12)]
        pids = {user: person(h, user) for user in habitual}
        for pid in pids.values():
            for day in range(1, 13):
                minute = (day * 7) % 50
                opened(h, pid, START - day * DAY + 10 * HOUR + minute * 60, day)
            for day in (1, 2):
                opened(h, pid, START - day * DAY - 3 * HOUR, 100 + day, automated=True)
        h.settle()
        h.send(*({"type": "track", "userId": u, "event": "Go"} for u in habitual))
        h.settle()
        # Which waits explore depends on the instance ids, random per run: one in ten of them
        # (a binomial count, so no fixed share of these twelve can be asserted).
        settled = [pid for pid in pids.values() if not explores(h, pid)]
        assert settled
        for pid in settled:
            assert timers(h, pid) == [utc(2027, 1, 15, 18)], pid  # 19:00 in Berlin
        for pid in pids.values():
            (due,) = timers(h, pid)
            assert START < due <= START + DAY and due % HOUR == 0

        # Without history: the population's best hour, 10:00 in Berlin.
        fresh = [person(h, f"new{i}") for i in range(6)]
        h.send(*({"type": "track", "userId": f"new{i}", "event": "Go"} for i in range(6)))
        h.settle()
        for pid in fresh:
            if not explores(h, pid):
                assert timers(h, pid) == [utc(2027, 1, 15, 9)]  # 10:00 in Berlin

        # The message goes out when the wait ends.
        h.advance(DAY)
        (pid,) = settled[:1]
        rows = h.sql("SELECT outcome, at FROM sends WHERE profile_id = ?", pid)
        assert [(str(o), float(a)) for o, a in rows] == [("queued", utc(2027, 1, 15, 18))]


def test_a_replay_waits_as_long_as_live_processing_did(backend_url: str, tmp_path: Path) -> None:
    """The wait reads the log up to the event that reached it: a replay, which finds later
    opens already attributed to the profile, must not read them."""
    from leadloop.log.rebuild import reset_derived_state

    with flows(backend_url, tmp_path, FRAGMENT) as h:
        pids = [person(h, f"late{i}") for i in range(4)]
        # Fixed message ids: they fix the instance ids, so which of these waits explore is the
        # same every run (with random ones, all four could explore: up to 1 run in 10,000).
        go = (
            {"type": "track", "userId": f"late{i}", "event": "Go", "messageId": f"go-{i}"}
            for i in range(4)
        )
        h.send(*go)
        h.settle()
        live = {pid: timers(h, pid) for pid in pids}
        for pid in pids:  # opens after the entry, in the evening
            for day in range(1, 13):
                opened(h, pid, START + 2 * HOUR + day * 60, day)
        h.settle()
        assert {pid: timers(h, pid) for pid in pids} == live
        h.engine.writer.submit(reset_derived_state).result()
        h.engine.processor.wake()
        h.settle()
        assert {pid: timers(h, pid) for pid in pids} == live
        assert utc(2027, 1, 15, 9) in [due for (due,) in live.values()]


def test_a_replay_does_not_read_the_opens_of_a_profile_merged_in_later(
    backend_url: str, tmp_path: Path
) -> None:
    """Opens of a profile that is merged in after the wait was decided were not the waiting
    profile's then: a replay, whose batch holds both and finds the opens already under the
    survivor, must not read them either."""
    from leadloop.log.rebuild import reset_derived_state

    with flows(backend_url, tmp_path, FRAGMENT) as h:
        h.send({"type": "identify", "anonymousId": "anon", "traits": {"timezone": "UTC"}})
        h.settle()
        anon = h.profile("anonymous_id", "anon")
        assert anon is not None
        for day in range(1, 13):  # evenings, 20:00 UTC
            opened(h, str(anon["id"]), START - day * DAY + 12 * HOUR, day)
        h.settle()
        known = person(h, "known")
        h.send({"type": "track", "userId": "known", "event": "Go"})
        h.settle()
        live = timers(h, known)
        h.send({"type": "identify", "userId": "known", "anonymousId": "anon"})
        h.settle()
        survivor = h.profile("user_id", "known")
        assert survivor is not None and survivor["id"] == known, survivor
        assert timers(h, known) == live
        h.engine.writer.submit(reset_derived_state).result()
        h.engine.processor.wake()
        h.settle()
        assert timers(h, known) == live
