"""A stored playbook this version no longer accepts (validation grew stricter since it was
applied) is never silently dropped: at start the engine refuses, naming the workspace, the
playbook and the file/line/field; while running it keeps the playbook it runs, and `GET
/api/v1/status` and the log say which stored one failed and why."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from leadloop.app import Engine, prepare_database
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.errors import ConfigError
from leadloop.storage import workspaces
from leadloop.storage.db import DatabaseUrl, connect

GOOD = """\
version: 1
workspace: acme
scoring:
  models:
    - id: m
      stages: [{ name: a }]
      fit: [{ id: vp, field: traits.title, op: contains, value: VP, points: 10 }]
"""
# What an older version stored and this one refuses: an unknown operator stands for any rule
# that grew stricter (a loop through a 0s wait, an unquoted date).
BROKEN = GOOD.replace("op: contains", "op: regex")


def _store(url: str, text: str, file: str = "acme.yaml") -> int:
    """Store a playbook row as an older version's `playbook apply` did, unvalidated here."""
    conn = connect(DatabaseUrl.parse(url))
    try:
        with conn.transaction():
            rows = conn.execute(
                "INSERT INTO playbooks (workspace_id, digest, source, applied_at) "
                "VALUES (?, ?, ?, ?) RETURNING id",
                ("acme", f"d{len(text)}", json.dumps({file: text}), 1.0),
            )
        return int(rows[0][0])
    finally:
        conn.close()


def leadloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadloop", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'leadloop.db'}"
    prepare_database(DatabaseUrl.parse(url), ManualClock())
    return url


def test_a_stored_playbook_that_no_longer_validates_stops_the_start(tmp_path: Path) -> None:
    url = _database(tmp_path)
    pid = _store(url, BROKEN)
    engine = Engine(Settings(database_url=url), manual_clock=True)
    with pytest.raises(ConfigError) as caught:
        engine.start()
    message = str(caught.value)
    assert "workspace acme" in message and f"#{pid}" in message
    assert "acme.yaml:7: scoring.models[0].fit[0].op: unknown operator 'regex'" in message
    assert "leadloop playbook validate" in message and "leadloop playbook apply" in message
    assert engine.playbooks == {}


def test_the_worker_command_exits_with_the_error(tmp_path: Path) -> None:
    url = _database(tmp_path)
    _store(url, BROKEN)
    done = leadloop("worker", "--database-url", url)  # a process: a started one waits
    assert done.returncode == 2, done.stderr
    assert "stored playbook #1 of workspace acme" in done.stderr


def test_a_fixed_playbook_given_at_start_is_applied_before_the_stored_ones_load(
    tmp_path: Path,
) -> None:
    url = _database(tmp_path)
    _store(url, BROKEN)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(GOOD)
    engine = Engine(Settings(database_url=url, playbook=str(fixed)), manual_clock=True)
    engine.start()
    try:
        assert engine.playbooks["acme"].model("m") is not None
    finally:
        engine.stop()


def test_a_running_engine_keeps_its_playbook_and_says_which_stored_one_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _database(tmp_path)
    good = _store(url, GOOD)
    engine = Engine(Settings(database_url=url), manual_clock=True)
    engine.start()
    try:
        token = engine.writer.submit(
            lambda c: (
                workspaces.ensure_workspace(c, "acme", 1.0),
                workspaces.create_admin_token(c, "acme", "t", 1.0),
            )[1]
        ).result()
        with TestClient(engine.asgi()) as client:
            headers = {"Authorization": f"Bearer {token}"}
            status = client.get("/api/v1/status", headers=headers).json()
            assert status["playbook"] == {
                "live": good,
                "error": None,
                "segment_sweep": None,
                "rescore": None,
            }
            broken = _store(url, BROKEN)
            with caplog.at_level(logging.ERROR, logger="leadloop"):
                engine.refresh_playbooks()
            assert engine.playbooks["acme"].model("m") is not None  # the running one stays
            status = client.get("/api/v1/status", headers=headers).json()
            error = status["playbook"]["error"]
            assert status["playbook"]["live"] == good
            assert error["playbook"] == broken
            assert "acme.yaml:7: scoring.models[0].fit[0].op" in error["message"]
            assert f"#{broken}" in caplog.text and "acme.yaml:7" in caplog.text
            fixed = _store(url, GOOD + "# fixed\n")
            engine.refresh_playbooks()
            status = client.get("/api/v1/status", headers=headers).json()
            assert status["playbook"] == {
                "live": fixed,
                "error": None,
                "segment_sweep": None,
                "rescore": None,
            }
    finally:
        engine.stop()


def test_diff_against_a_stored_playbook_that_no_longer_loads_says_so(tmp_path: Path) -> None:
    """`playbook diff` of the fixed files failed with the stored playbook's error, as if the
    files given were wrong."""
    url = _database(tmp_path)
    _store(url, BROKEN)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(GOOD)
    done = leadloop("playbook", "diff", "--database-url", url, str(fixed))
    assert done.returncode == 0, done.stderr
    assert "the live playbook #1 of workspace acme does not load in this version" in done.stdout
    assert "acme.yaml:7: scoring.models[0].fit[0].op" in done.stdout


def test_the_log_names_the_live_playbook_by_the_number_apply_printed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`playbook apply` prints `applied playbook #2`, and `GET /api/v1/status` says `live: 2`;
    the log said `playbook 1 ... is live` (the YAML's `version` label), as if the apply had not
    been taken."""
    url = _database(tmp_path)
    _store(url, GOOD)
    engine = Engine(Settings(database_url=url), manual_clock=True)
    engine.start()
    try:
        second = _store(url, GOOD + "# edited\n")
        with caplog.at_level(logging.INFO, logger="leadloop"):
            engine.refresh_playbooks()
        assert f"playbook #{second} (version 1, digest " in caplog.text
    finally:
        engine.stop()
