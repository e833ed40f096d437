"""Shared fixtures: one storage contract, two backends.

`backend_url` gives each test its own database: a SQLite file in a temp folder, or a
PostgreSQL database cloned from a migrated template (from LEADLOOP_TEST_POSTGRES_URL,
default the local server). When CI is set, an unreachable PostgreSQL fails the run;
elsewhere those tests are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from hypothesis import HealthCheck, settings

from leadloop.storage.db import DatabaseUrl, PostgresConnection, SqliteConnection, connect
from leadloop.storage.migrate import migrate

PG_URL = os.environ.get(
    "LEADLOOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# Hypothesis fails an example that runs past its 200 ms default deadline, and then calls the
# test flaky when the replay is quick: on a loaded CI machine one stalled example (a GC pause,
# a lazy import, two cores shared) turned a passing property red. The properties check results,
# not speed (the benchmarks do that), so no deadline and no too_slow health check. Loaded here,
# before any test module builds its own `settings(...)`, which inherit the rest from it.
settings.register_profile("leadloop", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("leadloop")


def _with_db(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/" + name))


_template: dict[str, str | None] = {}


def _postgres_template() -> str | None:
    """Name of a migrated template database, or None when PostgreSQL is unreachable."""
    if "name" in _template:
        return _template["name"]
    try:
        admin = PostgresConnection(PG_URL)
    except Exception as exc:
        if os.environ.get("CI"):
            raise RuntimeError(
                f"CI is set but PostgreSQL is unreachable at {PG_URL}: {exc}"
            ) from exc
        _template["name"] = None
        _template["reason"] = f"PostgreSQL unreachable at {PG_URL}: {exc}"
        return None
    name = f"leadloop_tpl_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    conn = PostgresConnection(_with_db(PG_URL, name))
    migrate(conn)
    conn.close()
    _template["name"] = name
    return name


def new_postgres_database() -> str:
    template = _postgres_template()
    if template is None:
        pytest.skip(_template.get("reason") or "PostgreSQL unreachable")
    name = f"leadloop_t_{uuid.uuid4().hex[:12]}"
    admin = PostgresConnection(PG_URL)
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    admin.close()
    return name


def drop_postgres_database(name: str) -> None:
    admin = PostgresConnection(PG_URL)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session", autouse=True)
def _drop_template() -> Iterator[None]:
    yield
    name = _template.get("name")
    if name:
        drop_postgres_database(name)


@contextmanager
def new_database(backend: str, tmp_path: Path, name: str = "leadloop") -> Iterator[str]:
    """The URL of an empty database: on "sqlite" a file `name` in `tmp_path`, on "postgres" a
    new database, dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/{name}.db"
        return
    database = new_postgres_database()
    try:
        yield _with_db(PG_URL, database)
    finally:
        drop_postgres_database(database)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with new_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def conn(backend_url: str) -> Iterator[SqliteConnection | PostgresConnection]:
    c = connect(DatabaseUrl.parse(backend_url))
    migrate(c)
    yield c
    c.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/leadloop.db"
