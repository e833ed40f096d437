"""What `prepare_database` tells the operator: one line for a new database, a line per
migration for an upgrade (which ones ran is what an operator upgrading wants to know)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from leadloop.app import prepare_database
from leadloop.clock import ManualClock
from leadloop.storage.db import DatabaseUrl, connect
from leadloop.storage.migrate import applied_versions, list_migrations


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "leadloop"]


def test_a_new_database_is_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    last = list_migrations("sqlite")[-1].version
    with caplog.at_level(logging.INFO, logger="leadloop"):
        prepare_database(DatabaseUrl.parse(f"sqlite:///{tmp_path}/new.db"), ManualClock(0.0))
    assert _messages(caplog) == [f"created the database schema (migrations 0001-{last:04d})"]


def test_an_upgrade_names_each_migration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = DatabaseUrl.parse(f"sqlite:///{tmp_path}/old.db")
    conn = connect(url)
    applied_versions(conn)
    migrations = list_migrations("sqlite")
    for migration in migrations[:-2]:
        with conn.transaction():
            conn.executescript(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
                (migration.version, migration.name),
            )
    conn.close()
    with caplog.at_level(logging.INFO, logger="leadloop"):
        prepare_database(url, ManualClock(0.0))
    assert _messages(caplog) == [
        f"applied migration {m.version:04d}_{m.name}" for m in migrations[-2:]
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="leadloop"):
        prepare_database(url, ManualClock(0.0))
    assert _messages(caplog) == []
