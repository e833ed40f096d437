"""Applying a changed model rescores every profile from the log, without re-firing actions,
and a broken playbook leaves the running one in place."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

from leadloop.playbook import store as playbook_store
from leadloop.scoring import replay, rescoring
from leadloop.testing import eventually
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness, make_harness
from tests.contract.test_scoring_pipeline import score, seed_lead


def pricing_points(points: int) -> str:
    """The example playbook's text with the pricing page rule worth `points`."""
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    old = "          points: 10\n        - id: lead_magnet"
    assert old in text
    return text.replace(old, f"          points: {points}\n        - id: lead_magnet")


def test_changed_model_rescores_profiles_from_the_log(
    scoring_harness: Harness, tmp_path: Path
) -> None:
    h = scoring_harness
    seed_lead(h, "vp-1")
    h.send({"type": "page", "userId": "low", "properties": {"path": "/pricing"}})
    h.settle()
    assert score(h, "low")["score"] == 10
    changed = tmp_path / "p.yaml"
    changed.write_text(pricing_points(30))
    h.engine.apply_playbook_file(str(changed))
    h.engine.refresh_playbooks()
    eventually(lambda: score(h, "low")["score"] == 30)
    eventually(lambda: score(h, "vp-1")["score"] == 72)
    assert h.sql("SELECT COUNT(*) FROM score_ledger WHERE kind = 'rescore'")[0][0] == 2
    # The VP was already MQL: the rescore does not announce it again.
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]
    assert h.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'webhook'") == [(0,)]


def test_a_broken_playbook_leaves_the_running_one(scoring_harness: Harness) -> None:
    h = scoring_harness
    live = h.engine.playbooks["default"]
    broken = (
        '{"broken.yaml": "version: 1\\nscoring:\\n  models:\\n    - id: x\\n      op: nope\\n"}'
    )
    h.engine.writer.submit(
        lambda c: c.execute(
            "INSERT INTO playbooks (workspace_id, digest, source, applied_at) VALUES (?, ?, ?, ?)",
            ("default", "bad", broken, 0.0),
        )
    ).result()
    h.engine.refresh_playbooks()
    assert h.engine.playbooks["default"] is live
    seed_lead(h)
    assert score(h, "vp-1")["score"] == 52


def test_rescoring_more_than_one_chunk_rescores_each_profile_once(
    scoring_harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = scoring_harness
    n = 2 * rescoring.CHUNK + 201
    users = [f"u-{i:05d}" for i in range(n)]
    for start in range(0, n, 400):
        h.send(
            *(
                {"type": "page", "userId": u, "properties": {"path": "/pricing"}}
                for u in users[start : start + 400]
            )
        )
    h.settle()
    assert h.sql("SELECT COUNT(*) FROM scores") == [(n,)]
    ledger_before = h.sql("SELECT COUNT(*) FROM score_ledger")[0][0]

    histories: list[list[str]] = []
    real_histories = replay.processed_histories

    def spy(conn: Any, workspace: str, ids: list[str], *args: Any) -> Any:
        histories.append(list(ids))
        return real_histories(conn, workspace, ids, *args)

    monkeypatch.setattr(replay, "processed_histories", spy)
    finished = threading.Event()
    real_chunk = rescoring.rescore_chunk

    def chunk(*args: Any) -> Any:
        after = real_chunk(*args)
        if after is None:
            finished.set()
        return after

    monkeypatch.setattr(rescoring, "rescore_chunk", chunk)
    progress: list[tuple[int, int]] = []
    h.engine.rescore_progress = lambda done, total: progress.append((done, total))
    changed = tmp_path / "p.yaml"
    changed.write_text(pricing_points(30))
    h.engine.apply_playbook_file(str(changed))
    h.engine.refresh_playbooks()
    eventually(finished.is_set, timeout=60)

    # Progress: the total first, then after each chunk, ending at the total.
    assert progress == [(0, n), (500, n), (1000, n), (n, n)]
    # Bounded memory: never more than one chunk of profiles' histories held at once.
    assert [len(c) for c in histories] == [500, 500, 201]
    assert sorted(pid for c in histories for pid in c) == sorted(
        str(pid) for (pid,) in h.sql("SELECT id FROM profiles")
    )
    # Every profile rescored exactly once: one `rescore` line each, and the new score.
    rows = h.sql(
        "SELECT profile_id, COUNT(*), MIN(points), MAX(total) FROM score_ledger "
        "WHERE kind = 'rescore' GROUP BY profile_id"
    )
    assert len(rows) == n
    assert {(count, points, total) for _, count, points, total in rows} == {(1, 20, 30)}
    assert h.sql("SELECT COUNT(*) FROM score_ledger") == [(ledger_before + n,)]
    assert score(h, users[0])["score"] == 30 and score(h, users[-1])["score"] == 30


def test_a_model_changed_while_the_engine_was_stopped_is_rescored_at_start(
    backend_url: str, tmp_path: Path
) -> None:
    """`leadloop playbook apply` with the engine down (or `serve --playbook` with an edited
    file): the next start finds the profiles scored under another version of the model and
    rescores them, as a running engine would have on the apply."""
    h = make_harness(backend_url, EXAMPLE_PLAYBOOK)
    try:
        h.send({"type": "page", "userId": "low", "properties": {"path": "/pricing"}})
        h.settle()
        assert score(h, "low")["score"] == 10
    finally:
        h.engine.stop()
    changed = tmp_path / "p.yaml"
    changed.write_text(pricing_points(30))
    h = make_harness(backend_url, str(changed))
    try:
        eventually(lambda: score(h, "low")["score"] == 30)
        assert h.sql("SELECT COUNT(*) FROM score_ledger WHERE kind = 'rescore'") == [(1,)]
    finally:
        h.engine.stop()
    # Started again on the same playbook, nothing is stale: no second rescore.
    h = make_harness(backend_url, str(changed))
    try:
        h.send({"type": "page", "userId": "low", "properties": {"path": "/"}})
        h.settle()
        assert score(h, "low")["score"] == 32
        assert h.sql("SELECT COUNT(*) FROM score_ledger WHERE kind = 'rescore'") == [(1,)]
    finally:
        h.engine.stop()


def test_a_changed_variable_a_rule_reads_rescores_at_start(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine reads `${VAR}` from its own environment when it starts: started again with
    another value, the same stored playbook scores differently, so its profiles are rescored
    and the ledger names the new version (the text alone left the version as it was)."""
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    old = "{ field: page.path, op: starts_with, value: /pricing }"
    assert old in text
    playbook = tmp_path / "p.yaml"
    playbook.write_text(text.replace(old, old.replace("/pricing", "'${PRICING_PATH}'")))
    monkeypatch.setenv("PRICING_PATH", "/pricing")
    h = make_harness(backend_url, str(playbook))
    try:
        h.send({"type": "page", "userId": "low", "properties": {"path": "/pricing"}})
        h.settle()
        assert score(h, "low")["score"] == 10
        before = h.engine.playbooks["default"].models[0].version
    finally:
        h.engine.stop()
    monkeypatch.setenv("PRICING_PATH", "/plans")
    h = make_harness(backend_url, str(playbook))
    try:
        after = h.engine.playbooks["default"].models[0].version
        assert after != before
        eventually(lambda: score(h, "low")["score"] == 0)
        assert h.sql("SELECT model_version FROM score_ledger WHERE kind = 'rescore'") == [(after,)]
    finally:
        h.engine.stop()


def test_two_looks_for_a_new_playbook_at_once_take_it_up_once(
    scoring_harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's once-a-second watch and an explicit refresh (the CLI's apply, a test) can
    look at the same time: both saw the playbook as new and each queued its jobs (the segment
    sweep of every profile twice). Both are held inside the look here, as long as the other
    can get in."""
    h = scoring_harness
    h.engine._watch_stop.set()  # the two looks below are the only ones
    assert h.engine._watcher is not None
    h.engine._watcher.join()
    changed = tmp_path / "p.yaml"
    changed.write_text(pricing_points(30))
    h.engine.apply_playbook_file(str(changed))
    both_inside = threading.Barrier(2)
    build = playbook_store.build

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        # With one look at a time the other waits its turn: there is no one to meet.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_inside.wait(timeout=1.0)
        return build(*args, **kwargs)

    monkeypatch.setattr(playbook_store, "build", slow_build)
    jobs: list[object] = []
    request = h.engine.processor.request
    monkeypatch.setattr(h.engine.processor, "request", lambda job: (jobs.append(job), request(job)))
    looks = [threading.Thread(target=h.engine.refresh_playbooks) for _ in range(2)]
    for look in looks:
        look.start()
    for look in looks:
        look.join()
    h.settle()
    assert len(jobs) == 2  # one rescore, one segment sweep
