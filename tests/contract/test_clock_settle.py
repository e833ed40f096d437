"""Moving the manual clock settles every due timer, also when the timer loop fired first."""

from __future__ import annotations

import time

import pytest

from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database
from tests.contract.conftest import Harness, make_harness
from tests.contract.test_scoring_pipeline import score, seed_lead

DAY = 86400.0


def test_settling_fires_a_timer_re_armed_by_a_wake_up_the_loop_fired(
    scoring_harness: Harness,
) -> None:
    h = scoring_harness
    seed_lead(h)  # decay timer at t0 + 30 days
    h.advance(10 * DAY)
    h.send({"type": "page", "userId": "vp-1", "properties": {"path": "/"}})
    h.settle()  # activity postpones decay to t0 + 40 days; the timer stays at t0 + 30 (lazily)
    before = score(h)["engagement"]
    engine = h.engine
    real = engine.timers.fire_now
    calls = []

    def loop_got_there_first() -> int:
        # The first call stands for the timer loop's own thread firing the due timer just
        # before settling looks: this call itself then finds nothing due.
        calls.append(1)
        fired = real()
        return 0 if len(calls) == 1 else fired

    engine.timers.fire_now = loop_got_there_first  # type: ignore[method-assign]
    assert engine.manual_clock is not None
    engine.manual_clock.advance(45 * DAY)  # now t0 + 55 days: the re-armed t0 + 40 is due too
    engine.settle_timers()
    h.settle()
    assert score(h)["engagement"] == before - 20


@pytest.mark.postgres
def test_settling_does_not_wait_on_a_processor_standing_by() -> None:
    """On PostgreSQL a second engine's processor stands by while another holds the lead: it has
    nothing in flight, so settling there waits only for the leader's lag."""
    name = new_postgres_database()
    url = _with_db(PG_URL, name)
    leader = make_harness(url)
    try:
        leader.settle()  # it holds the lead before the other starts
        standby = make_harness(url)
        try:
            # Its processor's idleness says nothing of the leader's batches: not a guess.
            status = standby.engine.read_sync(standby.engine.status)
            assert status["processor"] == {"idle": None, "halted": None}
            standby.send({"type": "track", "userId": "u1", "event": "Visit"})
            standby.settle()  # processed by the leader
            started = time.monotonic()
            standby.engine.settle_timers(timeout=20)
            assert time.monotonic() - started < 10
            assert leader.profile("user_id", "u1") is not None
        finally:
            standby.engine.stop()
    finally:
        leader.engine.stop()
        drop_postgres_database(name)
