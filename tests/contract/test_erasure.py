"""Erasure removes every trace of a person and nothing of anyone else."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from leadloop.identity.erase import erase_profile
from tests.contract.conftest import Harness
from tests.contract.test_journeys_seed import become_lead, journey_harness, playbook_with_journeys
from tests.contract.test_scoring_pipeline import seed_lead


def test_erasure_removes_the_person_everywhere(scoring_harness: Harness) -> None:
    h = scoring_harness
    seed_lead(h, "gone")
    seed_lead(h, "stays")
    h.send({"type": "page", "anonymousId": "anon-g", "properties": {"path": "/"}})
    h.send({"type": "identify", "anonymousId": "anon-g", "userId": "gone"})
    h.settle()
    gone = h.profile("user_id", "gone")
    stays = h.profile("user_id", "stays")
    assert gone and stays
    h.engine.writer.submit(lambda c: erase_profile(c, "default", gone["id"])).result()
    assert h.profile("user_id", "gone") is None
    assert h.profile("email", "gone@acme.test") is None
    assert h.profile("anonymous_id", "anon-g") is None
    for table in ("events", "identities", "scores", "score_ledger", "timers", "profiles"):
        column = "id" if table == "profiles" else "profile_id"
        rows = h.sql(f"SELECT COUNT(*) FROM {table} WHERE {column} = ?", gone["id"])
        assert rows == [(0,)], table
    assert h.sql("SELECT COUNT(*) FROM events WHERE body LIKE ?", "%gone@acme.test%") == [(0,)]
    assert h.profile("user_id", "stays") == stays


JOURNEY_TABLES = ("journey_instances", "journey_path", "journey_profiles", "sends")


@pytest.mark.usefixtures("channels_env")
def test_erasure_removes_journey_state_and_sends(backend_url: str, tmp_path: Path) -> None:
    h = journey_harness(backend_url, playbook_with_journeys(tmp_path))
    try:
        gone = become_lead(h, "gone")
        stays = become_lead(h, "stays")

        def counts(pid: str) -> dict[str, int]:
            return {
                table: int(h.sql(f"SELECT COUNT(*) FROM {table} WHERE profile_id = ?", pid)[0][0])
                for table in JOURNEY_TABLES
            }

        def outbox(pid: str) -> list[tuple[str, str]]:
            return [
                (str(status), str(payload))
                for status, payload in h.sql(
                    "SELECT status, payload FROM outbox JOIN outbox_payloads USING (id) "
                    "WHERE profile_id = ? ORDER BY id",
                    pid,
                )
            ]

        before = counts(stays)
        kept = outbox(stays)
        # Both entered the seed journey: an instance, its path, the membership, the guide's send.
        assert all(counts(gone).values()) and all(before.values()), (counts(gone), before)
        assert outbox(gone) and kept
        # One of their sends went out (as the dispatcher records a delivery), the rest wait.
        first = h.sql("SELECT MIN(id) FROM outbox WHERE profile_id = ?", gone)[0][0]
        h.engine.writer.submit(
            lambda c: c.execute("UPDATE outbox SET status = 'delivered' WHERE id = ?", (first,))
        ).result()
        h.engine.writer.submit(lambda c: erase_profile(c, "default", gone)).result()
        assert counts(gone) == dict.fromkeys(JOURNEY_TABLES, 0)
        assert counts(stays) == before
        # Their undelivered sends are gone, payloads and all; a delivered one stays as a key (a
        # replay must not send it again) with its payload blanked.
        assert outbox(gone) == [("delivered", "{}")]
        assert h.sql(
            "SELECT COUNT(*) FROM outbox_payloads WHERE id NOT IN (SELECT id FROM outbox)"
        ) == [(0,)]
        assert outbox(stays) == kept
    finally:
        h.engine.stop()


def test_erasure_takes_the_persons_events_still_waiting_in_the_log(harness: Harness) -> None:
    """Events of the person that the processor has not reached yet are theirs too: erased,
    they do not start a new profile later. Another person's waiting events stay."""
    from tests.integration.test_erasure_between_batches import Gate

    h = harness
    h.send({"type": "identify", "userId": "gone", "anonymousId": "anon-g", "traits": {"a": 1}})
    h.send({"type": "identify", "userId": "stays", "traits": {"a": 1}})
    h.settle()
    gone = h.profile("user_id", "gone")
    assert gone is not None
    gate = Gate()  # holds the processor on someone else's event, so the next ones wait
    h.engine.processor.set_stages([*h.engine.processor.stages, gate])
    h.send({"type": "track", "userId": "stays", "event": "Hold"})
    assert gate.inside.wait(30)
    h.send(
        {"type": "identify", "userId": "gone", "traits": {"email": "gone@acme.test"}},
        {"type": "page", "anonymousId": "anon-g", "properties": {"path": "/pricing"}},
        {"type": "track", "userId": "stays", "event": "Waited"},
    )
    waiting = h.sql("SELECT COUNT(*) FROM events WHERE profile_id IS NULL")[0][0]
    assert waiting >= 3
    erased = h.engine.erase("default", gone["id"])  # SQLite: after the held batch
    gate.release.set()
    assert erased.result(timeout=30) == 1
    h.settle()
    assert h.profile("user_id", "gone") is None and h.profile("anonymous_id", "anon-g") is None
    assert h.sql("SELECT COUNT(*) FROM events WHERE user_id = 'gone'") == [(0,)]
    assert h.sql("SELECT COUNT(*) FROM events WHERE anonymous_id = 'anon-g'") == [(0,)]
    stays = h.profile("user_id", "stays")
    assert stays is not None and stays["event_counts"]["track"] == 2


@pytest.mark.parametrize("settle", ["harness", "timers", "server"])
def test_settling_waits_for_a_batch_whose_events_an_erasure_took(
    harness: Harness, settle: str
) -> None:
    """An erasure from another process can delete every event of a batch being decided: the
    lag then reads 0 before the processor has dropped the batch, and settling (the tests', the
    engine's, as moving a sandbox's clock does, or `wait_processed` on a server's status) must
    not stop there."""
    from tests.integration.test_erasure_between_batches import Gate, _person_held
    from tests.integration.test_wait_processed import served

    h = harness
    with ExitStack() as stack:
        server = stack.enter_context(served(h.engine)) if settle == "server" else None
        gate = Gate()
        pid = _person_held(h, gate)
        # A plain write, as `leadloop erase` in another process does: not a processor job.
        h.engine.writer.submit(lambda c: erase_profile(c, "default", pid)).result(timeout=30)
        assert h.sql("SELECT COUNT(*) FROM events") == [(0,)]
        if server is not None:
            assert server.get("/api/v1/status")["processor"] == {"idle": False, "halted": None}
        waits = {"harness": h.settle, "timers": h.engine.settle_timers}
        settling = threading.Thread(target=server.wait_processed if server else waits[settle])
        settling.start()
        settling.join(0.5)
        returned_while_held = not settling.is_alive()
        gate.release.set()
        settling.join(30)
        assert not returned_while_held
        assert not settling.is_alive()
        assert h.engine.processor.redecided == 1  # the batch was dropped before settling ended
        assert h.profile("user_id", "gone") is None
