"""A poison event: a stage whose decision raises for one event used to fail its batch for ever,
and nothing behind it in the log was processed. It is now parked: the events around it are
processed once each, the event stays in the log with a row saying why, and a re-drive
processes it once the stage is fixed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.testclient import TestClient

from leadloop.errors import StorageError
from leadloop.identity.model import Profile
from leadloop.log import breaker, park, store
from leadloop.log.batch import Batch, Conn, OutboxRow
from leadloop.log.model import Event
from leadloop.log.processor import CURSOR
from leadloop.storage import workspaces
from leadloop.testing import eventually
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness


class Probe:
    """A stage with an effect per event (an outbox row, and a row of its own that a second
    write would duplicate) whose decision raises `fault()` for the events `poison` names."""

    name = "probe"

    def __init__(self) -> None:
        self.poison: set[str] = set()
        self.unwritable: set[str] = set()
        """Events whose row the database refuses (a NULL in a NOT NULL column)."""
        self.fault: Callable[[], BaseException] = lambda: ValueError("no rule for this event")
        self.raised = 0
        self.broken = False
        """Every event's decision raises (a bug deployed)."""

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        if self.broken or event.message_id in self.poison:
            self.raised += 1
            raise self.fault()
        done = batch.extra.setdefault("probe", [])
        assert isinstance(done, list)
        done.append(event.message_id)
        batch.outbox.append(
            OutboxRow(
                workspace_id=event.workspace_id,
                kind="webhook",
                destination="probe",
                idempotency_key=event.message_id,
                payload={},
                profile_id=profile.id,
                not_before=batch.now + 10**9,  # never due: the dispatcher leaves it alone
            )
        )
        return profile

    def flush(self, batch: Batch, conn: Conn) -> None:
        done = batch.extra.get("probe", [])
        assert isinstance(done, list)
        conn.executemany(
            "INSERT INTO probe_effects (message_id) VALUES (?)",
            [(None if m in self.unwritable else m,) for m in done],
        )


@pytest.fixture
def probed(backend_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[Harness, Probe]]:
    """`@pytest.mark.env({...})`: settings for the engine, as environment variables."""
    marker = request.node.get_closest_marker("env")
    h = make_harness(backend_url, env=marker.args[0] if marker else None)
    h.engine.writer.submit(
        lambda c: c.execute("CREATE TABLE probe_effects (message_id TEXT NOT NULL)")
    ).result()
    probe = Probe()
    processor = h.engine.processor
    processor.retry_delay = 0.0
    processor.set_stages([*processor.stages, probe])
    try:
        yield h, probe
    finally:
        h.engine.stop()


@pytest.fixture
def quick_holds(probed: tuple[Harness, Probe]) -> tuple[Harness, Probe]:
    """`probed`, its processor trying a held event again every 20 ms at the most."""
    probed[0].engine.processor.hold_delay_cap = 0.02
    return probed


def track(n: int) -> dict[str, Any]:
    return {"type": "track", "event": "Clicked", "userId": f"u{n}", "messageId": f"m{n}"}


def effects(h: Harness) -> list[tuple[str, int, int]]:
    """(message id, probe rows, outbox rows) per event that had an effect."""
    rows = h.sql(
        "SELECT p.message_id, COUNT(*), (SELECT COUNT(*) FROM outbox o "
        "WHERE o.idempotency_key = p.message_id) FROM probe_effects p "
        "GROUP BY p.message_id ORDER BY p.message_id"
    )
    return [(str(m), int(n), int(o)) for m, n, o in rows]


def parked(h: Harness) -> list[park.ParkedEvent]:
    return h.engine.read_sync(park.list_parked)


def admin_auth(h: Harness) -> dict[str, str]:
    """The header of a new admin token of `default`."""
    now = h.engine.clock.now()
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "t", now)
    ).result()
    return {"Authorization": f"Bearer {token}"}


def test_a_poison_event_is_parked_and_the_rest_processed_once(
    probed: tuple[Harness, Probe],
) -> None:
    h, probe = probed
    probe.poison = {"m3"}
    h.send(*(track(n) for n in range(1, 6)))
    h.settle()
    assert effects(h) == [(f"m{n}", 1, 1) for n in (1, 2, 4, 5)]
    [row] = parked(h)
    assert (row.workspace_id, row.message_id, row.type, row.event) == (
        "default",
        "m3",
        "track",
        "Clicked",
    )
    assert row.error == "ValueError" and row.message == "no rule for this event"
    assert "in handle" in row.traceback and row.attempts == park.STRIKES
    assert row.seq == int(h.sql("SELECT seq FROM events WHERE message_id = 'm3'")[0][0])
    assert h.engine.read_sync(lambda c: h.engine.status(c, "default"))["parked_events"] == 1
    assert h.engine.read_sync(lambda c: h.engine.status(c, "other"))["parked_events"] == 0

    # Events after it keep flowing.
    h.send(track(6))
    h.settle()
    assert [m for m, _, _ in effects(h)] == ["m1", "m2", "m4", "m5", "m6"]

    # Still broken: a re-drive keeps it parked, one attempt more.
    assert h.engine.redrive_parked(row.id).result(timeout=30) == "failed"
    [again] = parked(h)
    assert again.attempts == park.STRIKES + 1 and again.id == row.id

    # Fixed: a re-drive processes it, once, and the row goes.
    probe.poison = set()
    assert h.engine.redrive_parked(row.id).result(timeout=30) == "processed"
    assert parked(h) == []
    assert effects(h) == [(f"m{n}", 1, 1) for n in range(1, 7)]
    assert h.engine.redrive_parked(row.id).result(timeout=30) == "missing"


def test_poison_events_in_later_batches_and_one_the_database_refuses(
    probed: tuple[Harness, Probe],
) -> None:
    """Small batches, so that the failing ones come while the batch before them is being
    written (SQLite), and a write that fails for one event's content: which event caused it is
    found by processing them one at a time."""
    h, probe = probed
    h.engine.processor._batch_size = 3
    probe.poison = {"m5", "m9"}
    probe.unwritable = {"m7"}
    h.send(*(track(n) for n in range(1, 13)))
    h.settle()
    rows = parked(h)
    assert [r.message_id for r in rows] == ["m5", "m7", "m9"]
    assert "IntegrityError" in rows[1].error or "NotNullViolation" in rows[1].error
    assert effects(h) == [(f"m{n}", 1, 1) for n in sorted({*range(1, 13)} - {5, 7, 9}, key=str)]


def test_a_redrive_asked_for_in_the_database_is_taken_up_by_the_engine(
    probed: tuple[Harness, Probe],
) -> None:
    """What `leadloop events redrive` does from another process."""
    h, probe = probed
    probe.poison = {"m1", "m2"}
    h.send(track(1), track(2), track(3))
    h.settle()
    assert [r.message_id for r in parked(h)] == ["m1", "m2"]
    probe.poison = {"m2"}
    now = h.engine.clock.now()
    h.engine.writer.submit(lambda c: park.request_redrive(c, None, now)).result()
    # m1 is processed; m2 fails again and stays, no longer asked for.
    rows = eventually(
        lambda: (r := parked(h)) and len(r) == 1 and r[0].redrive_requested_at is None and r,
        timeout=30,
    )
    assert rows[0].message_id == "m2" and rows[0].attempts == park.STRIKES + 1
    assert [m for m, _, _ in effects(h)] == ["m1", "m3"]


def test_a_transient_failure_is_retried_and_never_parked(probed: tuple[Harness, Probe]) -> None:
    h, probe = probed
    probe.poison = {"m2"}
    failures = 4 * park.STRIKES

    def away() -> BaseException:
        if probe.raised >= failures:
            probe.poison = set()
        return StorageError("the database went away")

    probe.fault = away
    h.send(track(1), track(2), track(3))
    h.settle()
    assert probe.raised == failures
    assert parked(h) == []
    assert effects(h) == [(f"m{n}", 1, 1) for n in (1, 2, 3)]


def test_parking_and_the_cursor_move_commit_together(
    probed: tuple[Harness, Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the parked row is written, at the cursor's move (a crash, a lost
    connection), leaves neither the row nor the cursor moved: the event is parked later, once."""
    h, probe = probed
    probe.poison = {"m2"}
    attempts: list[int] = []
    real = store.set_cursor

    def lost(conn: Conn, name: str, position: str) -> None:
        if conn.execute("SELECT COUNT(*) FROM parked_events")[0][0]:
            attempts.append(1)
            raise StorageError("connection lost")
        real(conn, name, position)

    monkeypatch.setattr(store, "set_cursor", lost)
    h.send(track(1), track(2), track(3))
    eventually(lambda: len(attempts) >= 2, timeout=30)
    assert parked(h) == []
    position = h.engine.read_sync(lambda c: store.processed_seq(c, CURSOR))
    assert position == int(h.sql("SELECT seq FROM events WHERE message_id = 'm1'")[0][0])
    assert [m for m, _, _ in effects(h)] == ["m1"]
    monkeypatch.setattr(store, "set_cursor", real)
    h.settle()
    assert [r.message_id for r in parked(h)] == ["m2"]
    assert effects(h) == [("m1", 1, 1), ("m3", 1, 1)]


def test_the_admin_api_lists_a_workspaces_parked_events_and_counts_them(
    probed: tuple[Harness, Probe],
) -> None:
    h, probe = probed
    h.add_workspace("other")
    probe.poison = {"m1", "m3", "o4"}
    h.send(track(1), track(2), track(3))
    h.send(track(4) | {"userId": "o4", "messageId": "o4"}, workspace="other")
    h.settle()
    now = h.engine.clock.now()
    token = h.engine.writer.submit(
        lambda c: workspaces.create_admin_token(c, "default", "t", now)
    ).result()
    with TestClient(h.engine.admin_app()) as client:
        assert client.get("/api/v1/parked-events").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        first = client.get("/api/v1/parked-events?limit=1", headers=auth).json()
        assert [i["message_id"] for i in first["items"]] == ["m1"]
        assert first["items"][0]["error"] == "ValueError"
        after = first["next_after"]
        rest = client.get(f"/api/v1/parked-events?after={after}", headers=auth).json()
        assert [i["message_id"] for i in rest["items"]] == ["m3"] and rest["next_after"] is None
        assert client.get("/api/v1/status", headers=auth).json()["parked_events"] == 2
        bad = client.get("/api/v1/parked-events?limit=0", headers=auth)
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_erasing_the_person_deletes_their_parked_event(probed: tuple[Harness, Probe]) -> None:
    h, probe = probed
    probe.poison = {"m2", "o3"}
    h.send(track(1), track(2) | {"userId": "u1"}, track(3) | {"messageId": "o3"})
    h.settle()
    assert [r.message_id for r in parked(h)] == ["m2", "o3"]
    person = h.profile("user_id", "u1")
    assert person is not None
    assert h.engine.erase("default", person["id"]).result(timeout=30) == 1
    assert [r.message_id for r in parked(h)] == ["o3"]
    assert h.sql("SELECT message_id FROM events WHERE message_id IN ('m2', 'o3')") == [("o3",)]


def test_a_failed_decision_discards_what_the_stages_kept_for_its_batch(backend_url: str) -> None:
    """The journey stage registers a new playbook's journeys with the first batch that meets
    it, and remembers having done so. A batch that failed after that (here a database that
    went away for a moment) kept the memory though its rows were never written: the batch
    decided again registered nothing, and instances pinned to those versions found none."""
    h = make_harness(backend_url, EXAMPLE_PLAYBOOK)
    try:
        probe = Probe()
        probe.poison = {"m1"}

        def once() -> BaseException:
            probe.poison = set()
            return StorageError("the database went away")

        probe.fault = once
        processor = h.engine.processor
        processor.retry_delay = 0.0
        h.engine.writer.submit(
            lambda c: c.execute("CREATE TABLE probe_effects (message_id TEXT NOT NULL)")
        ).result()
        processor.set_stages([*processor.stages, probe])
        h.send(track(1))
        h.settle()
        assert probe.raised == 1 and effects(h) == [("m1", 1, 1)]
        assert h.sql("SELECT COUNT(*) FROM journey_versions")[0][0] > 0
    finally:
        h.engine.stop()


def test_a_redrive_writes_the_event_and_removes_its_row_together(
    probed: tuple[Harness, Probe], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-drive whose transaction fails after the row is deleted (a lost connection) leaves
    the row and writes none of the event's effects; the next re-drive writes them once."""
    h, probe = probed
    probe.poison = {"m1"}
    h.send(track(1), track(2))
    h.settle()
    [row] = parked(h)
    probe.poison = set()
    real = park.remove

    def lost(conn: Conn, parked_id: int) -> None:
        real(conn, parked_id)
        raise StorageError("connection lost")

    monkeypatch.setattr(park, "remove", lost)
    with pytest.raises(StorageError, match="connection lost"):
        h.engine.redrive_parked(row.id).result(timeout=30)
    assert [r.id for r in parked(h)] == [row.id] and [m for m, _, _ in effects(h)] == ["m2"]
    monkeypatch.setattr(park, "remove", real)
    assert h.engine.redrive_parked(row.id).result(timeout=30) == "processed"
    assert parked(h) == [] and effects(h) == [("m1", 1, 1), ("m2", 1, 1)]


def halted(h: Harness) -> Any:
    return h.engine.read_sync(lambda c: h.engine.status(c, "default"))["processor"]["halted"]


def outbox_order(h: Harness) -> list[str]:
    return [str(r[0]) for r in h.sql("SELECT idempotency_key FROM outbox ORDER BY id")]


@pytest.fixture
def holding(probed: tuple[Harness, Probe]) -> tuple[Harness, Probe]:
    """A deploy that breaks every event: a few are parked, then the processor holds."""
    h, probe = probed
    processor = h.engine.processor
    processor.retry_delay, processor.hold_delay_cap = 0.001, 0.02
    probe.broken = True
    h.send(*(track(n) for n in range(1, 21)))
    eventually(lambda: halted(h), timeout=30)
    return h, probe


def test_a_stage_failing_on_every_event_parks_a_few_then_holds_in_order(
    holding: tuple[Harness, Probe],
) -> None:
    h, probe = holding
    limit = breaker.Limits().in_a_row
    raised = probe.raised
    eventually(lambda: probe.raised > raised + 2, timeout=30)  # retried in place, not parked
    assert [r.message_id for r in parked(h)] == [f"m{n}" for n in range(1, limit + 1)]
    status = h.engine.read_sync(lambda c: h.engine.status(c, "default"))
    held = status["processor"]["halted"]
    assert held["seq"] == int(
        h.sql(f"SELECT seq FROM events WHERE message_id = 'm{limit + 1}'")[0][0]
    )
    assert held["error"] == "ValueError" and held["parked_recently"] == limit
    assert f"events of {limit} senders parked in a row" in held["reason"] and held["since"] > 0
    assert status["lag"] == 20 - limit and effects(h) == []

    probe.broken = False  # the fix deployed: processing resumes by itself, in log order
    eventually(lambda: halted(h) is None, timeout=30)
    h.settle()
    assert outbox_order(h) == [f"m{n}" for n in range(limit + 1, 21)]
    assert all(n == o == 1 for _, n, o in effects(h))
    assert len(parked(h)) == limit and h.sql(
        "SELECT COUNT(*) FROM cursors WHERE name = ?", park.HOLD
    ) == [(0,)]


def test_an_operator_parks_the_held_event(holding: tuple[Harness, Probe]) -> None:
    """What `leadloop events park-current` asks from another process: the held event is
    parked (it alone is at fault), and the events behind it are processed."""
    h, probe = holding
    limit = breaker.Limits().in_a_row
    culprit = f"m{limit + 1}"
    probe.broken, probe.poison = False, {culprit}
    now = h.engine.clock.now()
    assert h.engine.writer.submit(lambda c: park.request_park(c, CURSOR, now)).result() is not None
    eventually(lambda: len(parked(h)) == limit + 1, timeout=30)
    h.settle()
    assert parked(h)[-1].message_id == culprit and halted(h) is None
    assert outbox_order(h) == [f"m{n}" for n in range(limit + 2, 21)]


def test_occasional_poison_events_are_parked_without_holding(
    probed: tuple[Harness, Probe],
) -> None:
    """As many as the limit allows, spread out, and a burst in a row just under its limit."""
    h, probe = probed
    limits = breaker.Limits()
    burst = list(range(2, 2 + limits.in_a_row - 1))
    spread = [10 * k for k in range(1, limits.parks - len(burst) + 1)]
    probe.poison = {f"m{n}" for n in burst + spread}
    total = 10 * (len(spread) + 1)
    h.send(*(track(n) for n in range(1, total + 1)))
    h.settle()
    assert sorted(r.message_id for r in parked(h)) == sorted(probe.poison)
    assert halted(h) is None
    assert len(effects(h)) == total - len(probe.poison)


def window_reason(limits: breaker.Limits) -> str:
    return f"events of {limits.parks} senders parked within the last {limits.window} of the log"


def test_more_parks_than_the_limit_within_the_window_hold(
    quick_holds: tuple[Harness, Probe],
) -> None:
    """Poison events that are not in a row, but too many in a short stretch of the log."""
    h, probe = quick_holds
    limits = breaker.Limits()
    probe.poison = {f"m{2 * k}" for k in range(1, limits.parks + 3)}
    h.send(*(track(n) for n in range(1, 2 * limits.parks + 6)))
    held = eventually(lambda: halted(h), timeout=30)
    assert window_reason(limits) in held["reason"] and len(parked(h)) == limits.parks
    assert held["seq"] == int(
        h.sql(f"SELECT seq FROM events WHERE message_id = 'm{2 * limits.parks + 2}'")[0][0]
    )


@pytest.mark.env({"LEADLOOP_PARK_LIMIT": "0"})
def test_a_park_limit_of_0_holds_at_every_failing_event(
    quick_holds: tuple[Harness, Probe],
) -> None:
    h, probe = quick_holds
    probe.poison = {"m2"}
    h.send(track(1), track(2), track(3))
    held = eventually(lambda: halted(h), timeout=30)
    assert held["parked_recently"] == 0 and parked(h) == [] and outbox_order(h) == ["m1"]


def from_bot(n: int) -> dict[str, Any]:
    """One client's event: a script sending the same payload again and again."""
    return {"type": "track", "event": "Clicked", "userId": "bot", "messageId": f"b{n}"}


def seq_of(h: Harness, message_id: str) -> int:
    return int(h.sql("SELECT seq FROM events WHERE message_id = ?", message_id)[0][0])


@contextmanager
def restarted(
    h: Harness, probe: Probe, backend_url: str, env: dict[str, str] | None = None
) -> Iterator[Harness]:
    """`h`'s engine stopped and another started on its database (a restart, or a worker
    taking over), the probe still deployed."""
    h.engine.stop()
    again = make_harness(backend_url, env=env, start=False)
    try:
        processor = again.engine.processor
        processor.retry_delay, processor.hold_delay_cap = 0.001, 0.02
        processor.set_stages([*processor.stages, probe])
        again.engine.start()
        yield again
    finally:
        again.engine.stop()


def test_a_burst_of_poison_from_one_sender_is_parked_and_the_others_processed(
    probed: tuple[Harness, Probe],
) -> None:
    """Twenty alike poison events in a row from one client used to hold the whole engine
    after five, one `park-current` each: its repeats now count as one sender."""
    h, probe = probed
    probe.poison = {f"b{n}" for n in range(1, 21)}
    h.send(track(1), *(from_bot(n) for n in range(1, 21)), *(track(n) for n in range(2, 6)))
    h.settle()
    assert halted(h) is None
    assert [r.message_id for r in parked(h)] == [f"b{n}" for n in range(1, 21)]
    assert effects(h) == [(f"m{n}", 1, 1) for n in range(1, 6)]


def test_parks_in_a_row_from_different_senders_hold_one_senders_repeats_count_once(
    quick_holds: tuple[Harness, Probe],
) -> None:
    """A deploy bug meets many senders: the bot's three count as one of the five in a row."""
    h, probe = quick_holds
    limit = breaker.Limits().in_a_row
    probe.broken = True
    h.send(*(from_bot(n) for n in range(1, 4)), *(track(n) for n in range(1, 11)))
    held = eventually(lambda: halted(h), timeout=30)
    assert held["seq"] == seq_of(h, f"m{limit}")
    assert f"events of {limit} senders parked in a row failing with ValueError" in held["reason"]
    assert [r.message_id for r in parked(h)] == ["b1", "b2", "b3"] + [
        f"m{n}" for n in range(1, limit)
    ]
    assert effects(h) == []


def test_parks_of_many_senders_within_the_window_hold_amid_one_senders_burst(
    quick_holds: tuple[Harness, Probe],
) -> None:
    """A mixed storm, never in a row: the window counts the bot once among the senders."""
    h, probe = quick_holds
    limits = breaker.Limits()
    stride = limits.parks + 2
    probe.poison = {f"m{n}" for n in range(1, stride + 1)} | {f"b{n}" for n in range(1, stride + 1)}
    h.send(
        *(
            message
            for n in range(1, stride + 1)
            for message in (track(100 + n), track(n), from_bot(n))
        )
    )
    held = eventually(lambda: halted(h), timeout=30)
    users = limits.parks - 1  # and the bot: the last user's event parked, the bot's is held
    assert held["seq"] == seq_of(h, f"b{users}")
    assert window_reason(limits) in held["reason"]
    assert held["parked_recently"] == 2 * users - 1 == len(parked(h))


@pytest.mark.env({"LEADLOOP_PARK_PER_SENDER": "8"})
def test_one_sender_parks_at_most_its_cap_within_the_window_then_holds_across_a_restart(
    quick_holds: tuple[Harness, Probe], backend_url: str
) -> None:
    """A runaway client is not parked without end: past its cap the processor holds, as it
    did for any burst, and the hold (recorded in the database) outlives the engine."""
    h, probe = quick_holds
    probe.poison = {f"b{n}" for n in range(1, 13)}
    h.send(*(from_bot(n) for n in range(1, 13)), track(1))
    held = eventually(lambda: halted(h), timeout=30)
    assert held["seq"] == seq_of(h, "b9") and len(parked(h)) == 8
    assert "8 events of its sender parked within the last 1000" in held["reason"]
    with restarted(h, probe, backend_url, {"LEADLOOP_PARK_PER_SENDER": "8"}) as again:
        raised = probe.raised
        eventually(lambda: probe.raised > raised + 2 * park.STRIKES + 2, timeout=30)
        assert len(parked(again)) == 8 and halted(again) == held and effects(again) == []


def test_one_senders_burst_goes_on_being_parked_after_a_restart(
    probed: tuple[Harness, Probe], backend_url: str
) -> None:
    """The parks within the window are read from the database: the bot's are one sender
    there too, for an engine started again (the parks in a row start from zero)."""
    h, probe = probed
    probe.poison = {f"b{n}" for n in range(1, 21)}
    h.send(*(from_bot(n) for n in range(1, 11)))
    h.settle()
    with restarted(h, probe, backend_url) as again:
        again.send(track(1), *(from_bot(n) for n in range(11, 21)), track(2))
        again.settle()
        assert halted(again) is None and len(parked(again)) == 20
        assert effects(again) == [("m1", 1, 1), ("m2", 1, 1)]


def test_the_admin_api_redrives_a_workspaces_parked_events(
    probed: tuple[Harness, Probe],
) -> None:
    """`POST /api/v1/parked-events/{id}/redrive` and `/redrive-all`: as `leadloop events
    redrive`, asked in the database and answered with the outcome; another workspace's parked
    event is a 404, a malformed id a 400, and a refused request asks for nothing."""
    h, probe = probed
    h.add_workspace("other")
    probe.poison = {"m1", "m2", "m3", "o4"}
    h.send(track(1), track(2), track(3))
    h.send(track(4) | {"userId": "o4", "messageId": "o4"}, workspace="other")
    h.settle()
    ids = {r.message_id: r.id for r in parked(h)}
    auth = admin_auth(h)
    with TestClient(h.engine.admin_app()) as client:
        m1 = f"/api/v1/parked-events/{ids['m1']}/redrive"
        assert client.post(m1).status_code == 401
        for bad in ["0", "-1", "abc", "1.0", " 1", "%D9%A3", str(2**63), "9" * 40]:
            r = client.post(f"/api/v1/parked-events/{bad}/redrive", headers=auth)
            assert r.status_code == 400 and r.json()["message"].startswith("path.parked_id:"), bad
        for missing in [str(ids["o4"]), "999", str(2**63 - 1)]:
            r = client.post(f"/api/v1/parked-events/{missing}/redrive", headers=auth)
            assert (r.status_code, r.json()["code"]) == (404, "not_found"), missing
        assert all(r.redrive_requested_at is None for r in parked(h))

        r = client.post(m1, headers=auth)  # still broken
        assert r.status_code == 200
        body = r.json()
        assert (body["id"], body["outcome"]) == (ids["m1"], "failed")
        assert body["parked"]["attempts"] == park.STRIKES + 1
        assert body["parked"]["error"] == "ValueError"

        probe.poison = {"m3", "o4"}  # m1's and m2's rule fixed
        r = client.post(m1, headers=auth)
        assert r.status_code == 200 and r.json() == {
            "id": ids["m1"],
            "outcome": "processed",
            "parked": None,
        }
        assert client.post(m1, headers=auth).status_code == 404

        r = client.post("/api/v1/parked-events/redrive-all", headers=auth)
        assert r.status_code == 200
        assert r.json() == {
            "items": [
                {"id": ids["m2"], "outcome": "processed"},
                {"id": ids["m3"], "outcome": "failed"},
            ],
            "processed": 1,
            "failed": 1,
            "gone": 0,
            "requested": 0,
        }
    assert [r.message_id for r in parked(h)] == ["m3", "o4"]
    assert [r.attempts for r in parked(h)] == [park.STRIKES + 1, park.STRIKES]
    assert [m for m, _, _ in effects(h)] == ["m1", "m2"]


def test_the_admin_api_says_a_redriven_event_erased_meanwhile_is_gone(
    probed: tuple[Harness, Probe],
) -> None:
    """The log no longer holds the events: each re-drive removes the row and has nothing to
    process, which was answered as `processed`."""
    h, probe = probed
    probe.poison = {"m1", "m2"}
    h.send(track(1), track(2), track(3))
    h.settle()
    ids = {r.message_id: r.id for r in parked(h)}
    h.engine.writer.submit(
        lambda c: c.execute("DELETE FROM events WHERE message_id IN ('m1', 'm2')")
    ).result()
    auth = admin_auth(h)
    with TestClient(h.engine.admin_app()) as client:
        r = client.post(f"/api/v1/parked-events/{ids['m1']}/redrive", headers=auth)
        assert r.status_code == 200
        assert r.json() == {"id": ids["m1"], "outcome": "gone", "parked": None}
        r = client.post("/api/v1/parked-events/redrive-all", headers=auth)
        assert r.status_code == 200 and r.json() == {
            "items": [{"id": ids["m2"], "outcome": "gone"}],
            "processed": 0,
            "failed": 0,
            "gone": 1,
            "requested": 0,
        }
    assert parked(h) == [] and effects(h) == [("m3", 1, 1)]


def test_an_event_erased_while_tried_alone_gets_the_next_one_neither_parked_nor_held(
    probed: tuple[Harness, Probe],
) -> None:
    """The failures counted were the erased event's: the event now after the cursor has not
    failed at all, and was parked in its place (with the erased one's error)."""
    h, probe = probed
    probe.poison = {"m2"}

    def erased_meanwhile() -> BaseException:
        if probe.raised == park.STRIKES + park.STRIKES:  # its last failure alone
            h.engine.writer.submit(
                lambda c: c.execute("DELETE FROM events WHERE message_id = 'm2'")
            ).result()
        return ValueError("no rule for this event")

    probe.fault = erased_meanwhile
    h.send(track(1), track(2), track(3))
    h.settle()
    assert parked(h) == [] and halted(h) is None
    assert effects(h) == [("m1", 1, 1), ("m3", 1, 1)]


def test_a_hold_survives_a_restart(holding: tuple[Harness, Probe], backend_url: str) -> None:
    """The parks in a row are counted in memory: an engine started again (or a worker taking
    over) with the bug still deployed finds the hold recorded for the event and keeps it."""
    h, probe = holding
    limit = breaker.Limits().in_a_row
    before = halted(h)
    with restarted(h, probe, backend_url) as again:
        raised = probe.raised
        eventually(lambda: probe.raised > raised + 2 * park.STRIKES + 2, timeout=30)
        assert len(parked(again)) == limit and halted(again) == before


def test_a_job_asking_for_its_next_part_waits_for_the_next_attempt_at_the_held_event(
    holding: tuple[Harness, Probe],
) -> None:
    """A segment sweep asks for its next chunk at the end of each (`request_later`): while
    the processor holds, that runs at the next attempt at the held event, not at once with an
    attempt per part (nothing behind the held event is processed meanwhile anyway)."""
    h, _probe = holding
    processor = h.engine.processor
    processor.retry_delay, processor.hold_delay_cap = 600.0, 3600.0
    parts: list[int] = []

    def part(_conn: Any) -> None:
        parts.append(len(parts) + 1)
        if len(parts) < 5:
            processor.request_later(part)

    processor.request(part)  # cuts the wait short once
    eventually(lambda: parts == [1], timeout=30)
    processor.poke()  # the next attempt: the next part with it
    eventually(lambda: len(parts) >= 2, timeout=30)
    assert parts == [1, 2]
