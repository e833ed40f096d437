"""Events are processed while a changed model is rescored, a chunk per processor job, with
what rescoring everything first and then processing them gives: a profile with an event before
the rescore reaches it is rescored first, and its event decided on that.

The processor is driven by hand here (no thread): a batch, then one round of jobs, so where
each chunk falls between the events is fixed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.log import store
from leadloop.log.processor import CURSOR
from leadloop.scoring import rescoring
from leadloop.scoring.model import ScoreState
from tests.conftest import new_database
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TABLES = {
    "scores": "profile_id, model, state",
    "score_ledger": "profile_id, model, model_version, at, kind, rule, points, fit, engagement, "
    "total, stage, reason, message_id",
    "outbox o JOIN outbox_payloads p ON p.id = o.id": "kind, destination, idempotency_key, "
    "p.payload, profile_id",
    "events": "seq, type, event, profile_id, body",
    "timers": "key, profile_id, due_at, payload",
    "journey_instances": "*",
}


@pytest.fixture(autouse=True)
def sales_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_URL", "http://127.0.0.1:9/sales")
    monkeypatch.setenv("LEADLOOP_SALES_WEBHOOK_SECRET", SECRET)
    monkeypatch.setattr(rescoring, "CHUNK", 2)


def changed(tmp_path: Path, pricing: int = 30, magnet: int = 1) -> str:
    """The example playbook with the pricing page and the lead magnet worth other points."""
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    for old, new in (
        ("points: 10\n        - id: lead_magnet", f"points: {pricing}\n        - id: lead_magnet"),
        (
            "Lead Magnet Downloaded\n          points: 15",
            f"Lead Magnet Downloaded\n          points: {magnet}",
        ),
    ):
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = tmp_path / f"p-{pricing}-{magnet}.yaml"
    path.write_text(text)
    return str(path)


class Driven:
    """An engine whose processor runs only when told: `process` (batches until caught up),
    `jobs` (one round of processor jobs: one chunk of a rescore)."""

    def __init__(self, backend_url: str, playbook: str) -> None:
        engine = Engine(
            Settings(database_url=backend_url, playbook=playbook),
            clock=ManualClock(1_800_000_000.0),
            manual_clock=True,
            run_processor=False,
        )
        engine.start()
        self.h = Harness(engine)
        self.engine = engine
        self.conn: Any = engine._connect()
        self.sent = 0

    def send(self, *messages: dict[str, Any]) -> None:
        """`Harness.send`, with message ids numbered in order: the same in every run."""
        numbered = []
        for message in messages:
            self.sent += 1
            numbered.append({**message, "messageId": f"m-{self.sent}"})
        self.h.send(*numbered)

    def process(self) -> None:
        """Until every event is processed (on PostgreSQL a committed event may wait to be
        read until older transactions end: `log.store`)."""
        while self.engine.processor.run_once(self.conn) or store.lag(self.conn, CURSOR):
            pass

    def jobs(self) -> None:
        self.engine.processor._run_jobs(self.conn)

    def all_jobs(self) -> None:
        while self.engine.processor._jobs:
            self.jobs()

    def apply(self, playbook: str) -> None:
        self.engine.apply_playbook_file(playbook)
        self.engine.refresh_playbooks()

    def close(self) -> None:
        self.conn.close()
        self.engine.stop()

    def dump(self) -> dict[str, list[str]]:
        return {
            table: sorted(repr(row) for row in self.h.sql(f"SELECT {columns} FROM {table}"))
            for table, columns in TABLES.items()
        }

    def user(self, user: str) -> str:
        rows = self.h.sql(
            "SELECT profile_id FROM identities WHERE type = 'user_id' AND value = ?", user
        )
        return str(rows[0][0])

    def state(self, user: str) -> ScoreState:
        import msgspec

        rows = self.h.sql(
            "SELECT state FROM scores WHERE profile_id = ? AND model = 'lead'", self.user(user)
        )
        return msgspec.json.decode(rows[0][0], type=ScoreState)

    def webhooks(self, user: str) -> int:
        rows = self.h.sql(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'webhook' AND profile_id = ?", self.user(user)
        )
        return int(rows[0][0])


@pytest.fixture
def reference_url(backend_url: str, tmp_path: Path) -> Iterator[str]:
    """A second database on the test's backend."""
    backend = "sqlite" if backend_url.startswith("sqlite") else "postgres"
    with new_database(backend, tmp_path, "reference") as url:
        yield url


def page(user: str, path: str) -> dict[str, Any]:
    return {"type": "page", "userId": user, "properties": {"path": path}}


def senior(user: str) -> list[dict[str, Any]]:
    """Fit 25: a VP title and a company of 500."""
    return [
        {"type": "identify", "userId": user, "traits": {"title": "VP Sales"}},
        {"type": "group", "userId": user, "groupId": f"co-{user}", "traits": {"employees": 500}},
    ]


def seed(d: Driven) -> None:
    """Under the example model (pricing 10, lead magnet 15, MQL at 50)."""
    d.send(*senior("crosser"), page("crosser", "/"))  # 27
    d.send(
        *senior("mag"),
        page("mag", "/"),
        {"type": "track", "userId": "mag", "event": "Lead Magnet Downloaded"},
    )  # 42
    d.send(*senior("riser"), page("riser", "/pricing"))  # 35
    d.send({"type": "page", "anonymousId": "anon-1", "properties": {"path": "/pricing"}})
    for i in range(7):
        d.send(page(f"f{i}", "/pricing"), *([page(f"f{i}", "/")] if i % 2 else []))
    d.send(
        *senior("vp"),
        page("vp", "/pricing"),
        page("vp", "/"),
        {"type": "track", "userId": "vp", "event": "Lead Magnet Downloaded"},
    )  # 52, MQL
    d.process()
    d.all_jobs()  # what the start queued


# The events after the model change. The first three come before any chunk.
FIRST = [
    page("crosser", "/pricing"),  # 27 + 30 on the rescored state: MQL now, one webhook
    {"type": "track", "userId": "mag", "event": "Lead Magnet Downloaded"},  # 28 + 1; old: 57
    page("riser", "/"),  # rescored to 55 (MQL, silently), then 57: no webhook
]
LATER = [
    page("f3", "/pricing"),
    page("new", "/pricing"),
    page("f0", "/"),
    {"type": "identify", "userId": "f2", "anonymousId": "anon-1", "traits": {"title": "CEO"}},
    page("crosser", "/"),
    page("f6", "/pricing"),
    page("vp", "/pricing"),
    page("f1", "/"),
]


@contextmanager
def changed_after_seed(url: str, playbook: str) -> Iterator[Driven]:
    """An engine on `url` with the seed processed, then `playbook` applied (the rescore queued)."""
    d = Driven(url, EXAMPLE_PLAYBOOK)
    try:
        seed(d)
        d.apply(playbook)
        yield d
    finally:
        d.close()


def test_events_between_chunks_give_what_rescoring_first_gives(
    backend_url: str, reference_url: str, tmp_path: Path
) -> None:
    playbook = changed(tmp_path)

    # The reference: the whole rescore, then the events.
    with changed_after_seed(reference_url, playbook) as ref:
        ref.all_jobs()
        ref.send(*FIRST)
        ref.process()
        for event in LATER:
            ref.send(event)
            ref.process()
        expected = ref.dump()
        assert ref.webhooks("crosser") == 1 and ref.webhooks("mag") == 0

    with changed_after_seed(backend_url, playbook) as d:
        d.send(*FIRST)
        d.process()  # before any chunk: each of them is rescored at its event
        assert {d.state(u).model_version for u in ("crosser", "mag", "riser")} == {
            d.engine.playbooks["default"].models[0].version
        }
        assert d.webhooks("crosser") == 1  # crossed on the rescored state, once
        assert d.webhooks("mag") == 0  # would have crossed on the old state only
        assert d.webhooks("riser") == 0  # the rescore moved it up: no action
        for i, event in enumerate(LATER):
            d.jobs()  # one chunk of 2 profiles
            assert (d.engine.playbook_status("default")["rescore"] is not None) or i > 3
            d.send(event)
            d.process()
        d.all_jobs()
        assert d.engine.playbook_status("default")["rescore"] is None
        assert d.h.sql("SELECT COUNT(*) FROM profiles WHERE merged_into IS NOT NULL") == [(1,)]
        assert d.dump() == expected


def rescore_lines(d: Driven) -> dict[str, list[str]]:
    """Per profile, the model versions of its `rescore` ledger lines, in order."""
    lines: dict[str, list[str]] = {}
    for pid, version in d.h.sql(
        "SELECT profile_id, model_version FROM score_ledger WHERE kind = 'rescore' ORDER BY id"
    ):
        lines.setdefault(str(pid), []).append(str(version))
    return lines


def test_a_rescore_a_stop_cut_short_resumes_where_it_stood(
    backend_url: str, tmp_path: Path
) -> None:
    playbook = changed(tmp_path)
    with changed_after_seed(backend_url, playbook) as d:
        d.jobs()
        d.jobs()  # two chunks of 2, then the engine stops (or dies)
        assert d.engine.playbook_status("default")["rescore"] == {
            "profiles_done": 4,
            "profiles": 12,
        }
        version = d.engine.playbooks["default"].models[0].version
    assert len(rescore_lines(d)) == 4

    progress: list[tuple[int, int]] = []
    d = Driven(backend_url, playbook)
    try:
        d.engine.rescore_progress = lambda done, total: progress.append((done, total))
        d.all_jobs()
        # From where it stood: the first 4 profiles are not rescored a second time.
        assert progress == [(4, 12), (6, 12), (8, 12), (10, 12), (12, 12)]
        lines = rescore_lines(d)
        assert len(lines) == 12 and set(map(tuple, lines.values())) == {(version,)}
        assert d.h.sql("SELECT COUNT(*) FROM cursors WHERE name = ?", "rescore:default") == [(0,)]
        assert d.state("f0").model_version == version
    finally:
        d.close()


def test_a_model_changed_again_during_a_rescore_starts_it_over(
    backend_url: str, tmp_path: Path
) -> None:
    d = Driven(backend_url, EXAMPLE_PLAYBOOK)
    try:
        seed(d)
        progress: list[tuple[int, int]] = []
        d.engine.rescore_progress = lambda done, total: progress.append((done, total))
        d.apply(changed(tmp_path, pricing=30))
        first = d.engine.playbooks["default"].models[0].version
        d.jobs()
        d.send(page("f1", "/pricing"))
        d.process()  # rescored under the first change at its event
        d.jobs()
        d.apply(changed(tmp_path, pricing=40))
        second = d.engine.playbooks["default"].models[0].version
        d.all_jobs()
        assert progress[:3] == [(0, 12), (2, 12), (4, 12)]
        assert progress[3:] == [(0, 12), (2, 12), (4, 12), (6, 12), (8, 12), (10, 12), (12, 12)]
        lines = rescore_lines(d)
        assert len(lines) == 12
        assert all(versions[-1] == second for versions in lines.values())
        # Rescored under the first change: the 4 profiles of its 2 chunks, and f1 at its event.
        under_first = {pid for pid, versions in lines.items() if first in versions}
        assert under_first == set(sorted(lines)[:4]) | {d.user("f1")}
        assert d.state("f1").model_version == second
        assert d.state("riser").stage == "MQL"  # 25 + 40, rescored silently
        assert d.webhooks("riser") == 0
        assert d.engine.playbook_status("default")["rescore"] is None
    finally:
        d.close()


def test_a_replay_of_the_log_drops_a_rescore_under_way(backend_url: str, tmp_path: Path) -> None:
    """`leadloop replay` scores every profile under the live models: a rescore record left
    would have the next rescore of these versions skip the profiles before it."""
    from leadloop.log.rebuild import reset_derived_state

    with changed_after_seed(backend_url, changed(tmp_path)) as d:
        d.jobs()
        assert d.h.sql("SELECT COUNT(*) FROM cursors WHERE name = ?", "rescore:default") == [(1,)]
        d.engine.writer.submit(reset_derived_state).result()
        assert d.h.sql("SELECT COUNT(*) FROM cursors WHERE name = ?", "rescore:default") == [(0,)]


def changed_again_behind(d: Driven, tmp_path: Path) -> str:
    """Two chunks of the rescore, then the pricing page changed to 40 and an event of the
    first profile by id, which the rescore passed: rescored again, to the new version, at its
    event. Returns that profile's user id."""
    d.jobs()
    d.jobs()  # the first 4 profiles, by id, rescored
    d.apply(changed(tmp_path, pricing=40))
    (user,) = d.h.sql(
        "SELECT value FROM identities WHERE type = 'user_id' AND profile_id = "
        "(SELECT MIN(profile_id) FROM identities WHERE type = 'user_id')"
    )[0]
    d.send(page(str(user), "/"))
    d.process()
    assert d.state(str(user)).model_version == d.engine.playbooks["default"].models[0].version
    return str(user)


def test_a_model_changed_and_changed_back_between_two_chunks_starts_it_over(
    backend_url: str, tmp_path: Path
) -> None:
    """An event scored under the version in between rescored its profile to that version; the
    rescore, at the same versions as before when it next runs, must still not go on from where
    it stood: that profile may be behind it."""
    with changed_after_seed(backend_url, changed(tmp_path, pricing=30)) as d:
        first = d.engine.playbooks["default"].models[0].version
        user = changed_again_behind(d, tmp_path)
        d.apply(changed(tmp_path, pricing=30, magnet=1))  # the first version again
        assert d.engine.playbooks["default"].models[0].version == first
        d.all_jobs()
        assert d.state(user).model_version == first
        states = d.h.sql("SELECT state FROM scores")
        assert all(first in str(state) for (state,) in states)


def test_a_rescore_stopped_after_a_change_and_changed_back_while_stopped_starts_over(
    backend_url: str, tmp_path: Path
) -> None:
    """A model changed while a rescore ran, an event rescored its profile to the new version,
    and the engine stopped before the rescore's next chunk; the model is changed back while it
    is stopped. The record still names the versions now live again: resumed from it, the
    rescore would pass by the profile scored under the version in between."""
    first_playbook = changed(tmp_path, pricing=30)
    with changed_after_seed(backend_url, first_playbook) as d:
        first = d.engine.playbooks["default"].models[0].version
        user = changed_again_behind(d, tmp_path)
        # The engine stops.
    (tmp_path / "again").mkdir()
    d = Driven(backend_url, changed(tmp_path / "again", pricing=30))
    try:
        assert d.engine.playbooks["default"].models[0].version == first
        d.all_jobs()
        assert d.state(user).model_version == first
        assert all(first in str(state) for (state,) in d.h.sql("SELECT state FROM scores"))
    finally:
        d.close()
