"""Connections to the two backends behind one small interface.

SQL is written once with `?` placeholders; the PostgreSQL connection rewrites them to
`%s`. Dialect-specific statements (the log cursor, `SKIP LOCKED`) live in `queries.py`
beside their SQLite twin, never inline in a service (docs/decisions/0002-sql.md).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlparse

from leadloop.errors import ConfigError, StorageError
from leadloop.storage import bulk as bulk_sql

Dialect = Literal["sqlite", "postgres"]
Row = tuple[Any, ...]


@dataclass(frozen=True)
class DatabaseUrl:
    dialect: Dialect
    url: str
    path: str | None = None
    """The SQLite file (`:memory:` is refused: readers need their own connections)."""
    synchronous: str = "NORMAL"
    """SQLite only: `sqlite:///db?synchronous=FULL` also survives power loss (slower)."""

    @staticmethod
    def parse(url: str) -> DatabaseUrl:
        if "\x00" in url:
            # SQLite's open raised ValueError on it; libpq read the URL up to it, so a
            # database named before the NUL was the one connected to.
            raise ConfigError("malformed database URL: it contains a NUL character")
        if url.startswith("sqlite:///"):
            path, _, query = url[len("sqlite:///") :].partition("?")
            if not path or path == ":memory:":
                raise ConfigError("sqlite needs a file path: sqlite:///path/to/leadloop.db")
            sync = "NORMAL"
            for part in query.split("&") if query else ():
                key, _, value = part.partition("=")
                if key != "synchronous" or value.upper() not in ("NORMAL", "FULL"):
                    raise ConfigError(
                        f"unknown SQLite option {part!r}: only synchronous=NORMAL|FULL"
                    )
                sync = value.upper()
            return DatabaseUrl("sqlite", url, path, sync)
        try:
            scheme = urlparse(url).scheme
        except ValueError as error:  # e.g. "postgresql://[::1": an unclosed IPv6 host
            raise ConfigError(f"malformed database URL: {error}") from error
        if scheme in ("postgresql", "postgres"):
            return DatabaseUrl("postgres", url)
        raise ConfigError(
            f"unsupported database URL {url!r}: use sqlite:///path or postgresql://user@host/db"
        )


class Connection(Protocol):
    dialect: Dialect

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def executemany(
        self, sql: str, rows: Iterable[Sequence[Any]], *, bulk: bool = False
    ) -> None: ...

    def insert_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row]: ...

    def transaction(self) -> Any: ...

    @property
    def broken(self) -> bool:
        """True once the database has dropped the session (a restart, a failover): nothing
        on this connection can succeed again, and the caller opens a new one."""
        ...

    def snapshot(self) -> Any:
        """A read-only transaction: every read inside sees the database as it was when the
        first one ran, whatever other connections commit meanwhile. Nothing may be written in
        it (on SQLite a write could not start from an old snapshot)."""
        ...

    def close(self) -> None: ...


class SqliteConnection:
    dialect: Dialect = "sqlite"

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write transaction
            # takes the lock up front instead of failing half-way on upgrade.
            # cached_statements: `storage.bulk` compiles each batch shape into a few sizes.
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, cached_statements=512
            )
            # The first statement reads the file: a folder, or a file that is not a SQLite
            # database, fails here, before anything is written to it.
            self._conn.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open SQLite database {path}: {exc}") from exc
        # NORMAL in WAL mode survives a process crash (SIGKILL); FULL also survives power loss.
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        self._conn.execute("PRAGMA busy_timeout=10000")
        # The default page cache (2 MB) thrashes once timers and instances reach the millions.
        self._conn.execute("PRAGMA cache_size=-32768")
        self._depth = 0

    @property
    def broken(self) -> bool:
        return False  # a file: there is no session to lose

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self._conn.execute(sql, tuple(params))
            return cur.fetchall() if cur.description is not None else []
        except sqlite3.Error as exc:
            raise StorageError(f"{exc}: {sql.strip()[:200]}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], *, bulk: bool = False) -> None:
        """`bulk`: write the rows in a few multi-row statements (`storage.bulk`), for the
        processor's and the writer's batches."""
        if bulk:
            listed = rows if isinstance(rows, list) else list(rows)
            if len(listed) > 1:
                ordered = bulk_sql.rows_for(sql, listed)
                # Parameters per statement this SQLite takes (999 before 3.32, 32,766 since).
                most = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                for one, params in bulk_sql.statements(sql, ordered, most):
                    self.execute(one, params)
                return
            rows = listed
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StorageError(f"{exc}: {sql.strip()[:200]}") from exc

    def insert_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row]:
        """`INSERT … VALUES (…) [ON CONFLICT …] RETURNING …` for many rows: what the rows that
        were written return, in no particular order (a few multi-row statements, as `bulk`)."""
        most = self._conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        found: list[Row] = []
        for one, params in bulk_sql.statements(sql, rows, most):
            found += self.execute(one, params)
        return found

    def executescript(self, script: str) -> None:
        # sqlite3's own executescript() commits first; run statement by statement instead so
        # a migration stays inside the caller's transaction. Comments are dropped first, and
        # migrations hold no `;` or `--` inside string literals.
        code = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
        for statement in code.split(";"):
            if statement.strip():
                self.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            # A COMMIT that failed (disk full, I/O error) may leave the transaction open: kept,
            # every later BEGIN on this connection failed. After some errors SQLite has rolled
            # back already, and a ROLLBACK then would hide the error behind its own.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        assert not self._depth, "a snapshot is a transaction of its own"
        # In WAL mode a read transaction keeps the state of its first read until it ends.
        self._conn.execute("BEGIN DEFERRED")
        self._depth = 1
        try:
            yield
        finally:
            self._conn.execute("ROLLBACK")
            self._depth = 0

    def close(self) -> None:
        self._conn.close()


_PLACEHOLDER = re.compile(r"\?")


class PostgresConnection:
    dialect: Dialect = "postgres"

    def __init__(self, url: str) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        except UnicodeError as exc:
            # The resolver encodes the host with IDNA, which refuses an empty label (`a..b`),
            # one past 63 characters and format characters: not a psycopg error, a traceback.
            raise StorageError(f"cannot connect to PostgreSQL: bad host name: {exc}") from exc
        self._psycopg = psycopg
        self._cache: dict[str, str] = {}

    def _sql(self, sql: str) -> str:
        converted = self._cache.get(sql)
        if converted is None:
            converted = _PLACEHOLDER.sub("%s", sql)
            self._cache[sql] = converted
        return converted

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return list(cur.fetchall()) if cur.description is not None else []
        except self._psycopg.Error as exc:
            raise StorageError(f"{exc}: {sql.strip()[:200]}") from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], *, bulk: bool = False) -> None:
        """`bulk` changes nothing here: psycopg's `executemany` already pipelines the rows."""
        try:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows))
        except self._psycopg.Error as exc:
            raise StorageError(f"{exc}: {sql.strip()[:200]}") from exc

    def insert_returning(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row]:
        """As `SqliteConnection.insert_returning`: pipelined, one result set per row."""
        found: list[Row] = []
        try:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), list(rows), returning=True)
                while True:
                    found += cur.fetchall()
                    if not cur.nextset():
                        break
        except self._psycopg.Error as exc:
            raise StorageError(f"{exc}: {sql.strip()[:200]}") from exc
        return found

    @property
    def broken(self) -> bool:
        return bool(self._conn.closed or self._conn.broken)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # BEGIN and COMMIT fail as every statement does (StorageError): a session the server
        # ended must reach the callers as "storage unavailable", not as a driver's error.
        try:
            with self._conn.transaction():
                yield
        except self._psycopg.Error as exc:
            raise StorageError(f"transaction failed: {exc}") from exc

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._conn.transaction(force_rollback=True):
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    def executescript(self, script: str) -> None:
        self._conn.execute(script)

    def close(self) -> None:
        self._conn.close()


def connect(url: DatabaseUrl) -> SqliteConnection | PostgresConnection:
    if url.dialect == "sqlite":
        assert url.path is not None
        return SqliteConnection(url.path, synchronous=url.synchronous)
    return PostgresConnection(url.url)
