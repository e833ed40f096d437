"""Multi-row writes (`storage.bulk`) leave exactly what `executemany` leaves, on SQLite.

Each case writes the same rows into two fresh databases, one row at a time and in multi-row
statements, and compares the tables: upserts that meet their own earlier rows (also across
statements: batches are cut into powers of two), conflicts left alone, deletes, updates that
name a key twice, awkward text and a NUL.
"""

from __future__ import annotations

import math
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from leadloop.storage import bulk
from leadloop.storage.db import SqliteConnection

SCHEMA = (
    "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, ws TEXT NOT NULL, k TEXT NOT NULL, "
    "n REAL, i INTEGER, s TEXT, UNIQUE (ws, k))"
)
UPSERT = (
    "INSERT INTO t (ws, k, n, i, s) VALUES (?, ?, ?, ?, ?) ON CONFLICT (ws, k) DO UPDATE SET "
    "n = excluded.n, i = t.i + excluded.i, s = excluded.s"
)
IGNORE = "INSERT INTO t (ws, k, n, i, s) VALUES (?, ?, ?, ?, ?) ON CONFLICT (ws, k) DO NOTHING"
LITERAL = "INSERT INTO t (ws, k, n, i, s) VALUES (?, ?, ?, 7, 'fixed') ON CONFLICT DO NOTHING"
DELETE = "DELETE FROM t WHERE ws = ? AND k = ?"
DELETE_EXACT = "DELETE FROM t WHERE ws = ? AND k = ? AND n = ?"
UPDATE = "UPDATE t SET s = ?, n = ? WHERE ws = ? AND k = ?"


def pair(tmp_path: Path) -> tuple[SqliteConnection, SqliteConnection]:
    conns = (SqliteConnection(str(tmp_path / "a.db")), SqliteConnection(str(tmp_path / "b.db")))
    for conn in conns:
        conn.execute(SCHEMA)
    return conns


def both(conns: tuple[SqliteConnection, SqliteConnection], sql: str, rows: list[Any]) -> None:
    plain, one = conns
    with plain.transaction():
        plain.executemany(sql, rows)
    with one.transaction():
        one.executemany(sql, rows, bulk=True)


def table(conn: SqliteConnection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, ws, k, n, i, s, typeof(n), typeof(i) FROM t ORDER BY id")


def rows(n: int, seed: int, keys: int = 40) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    texts = ["plain", 'quo"te', "back\\slash", "é\u2028😀", "tab\tnl\n", "", None]
    return [
        (
            rnd.choice(["default", "other"]),
            f"k{rnd.randrange(keys)}",
            rnd.choice([rnd.uniform(1.7e9, 1.9e9), rnd.random() * 1e-7, 3.0, -0.0, None]),
            rnd.choice([0, 1, -5, 2**62, True, None]),
            rnd.choice(texts),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("sql", [UPSERT, IGNORE])
def test_inserts_meet_their_own_rows_as_executemany_does(tmp_path: Path, sql: str) -> None:
    conns = pair(tmp_path)
    both(conns, sql, rows(500, 1))
    both(conns, sql, rows(500, 2))
    assert table(conns[0]) == table(conns[1])
    assert len(table(conns[0])) <= 80  # the keys repeat: conflicts were met


def test_literals_among_the_placeholders(tmp_path: Path) -> None:
    conns = pair(tmp_path)
    both(conns, LITERAL, [r[:3] for r in rows(300, 3)])
    assert table(conns[0]) == table(conns[1])


@pytest.mark.parametrize("sql", [DELETE, DELETE_EXACT])
def test_deletes(tmp_path: Path, sql: str) -> None:
    conns = pair(tmp_path)
    both(conns, UPSERT, rows(400, 4, keys=200))
    stored = table(conns[0])
    doomed = [(r[1], r[2]) if sql == DELETE else (r[1], r[2], r[3]) for r in stored[::3]]
    doomed += [("default", "missing"), ("default", "missing")] if sql == DELETE else []
    both(conns, sql, doomed)
    assert table(conns[0]) == table(conns[1])
    # `n = NULL` matches nothing, in both ways of writing it.
    gone = [r for r in stored[::3] if sql == DELETE or r[3] is not None]
    assert gone and len(table(conns[0])) == len(stored) - len(gone)


def test_an_update_naming_a_key_twice_keeps_the_last(tmp_path: Path) -> None:
    conns = pair(tmp_path)
    both(conns, UPSERT, rows(200, 5, keys=30))
    rnd = random.Random(6)
    changes = [
        (f"v{i}", float(i), rnd.choice(["default", "other"]), f"k{rnd.randrange(30)}")
        for i in range(300)
    ]
    both(conns, UPDATE, changes)
    assert table(conns[0]) == table(conns[1])


def test_floats_come_back_bit_for_bit(tmp_path: Path) -> None:
    conns = pair(tmp_path)
    rnd = random.Random(7)
    values = [rnd.uniform(-1e300, 1e300) for _ in range(300)] + [1 / 3, 0.1, 5e-324, 1.8e9 + 0.1]
    both(conns, UPSERT, [("w", f"k{i}", v, i, None) for i, v in enumerate(values)])
    stored = [row[3] for row in table(conns[1])]
    assert stored == values and all(math.isfinite(v) for v in stored)


def test_a_nul_survives(tmp_path: Path) -> None:
    conns = pair(tmp_path)
    data: list[tuple[Any, ...]] = [("w", "a", 1.0, 1, "before\x00after"), ("w", "b", 2.0, 2, "x")]
    both(conns, UPSERT, data)
    assert table(conns[0]) == table(conns[1])
    assert table(conns[1])[0][5] == "before\x00after"


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (ws, k) SELECT ws, k FROM t",
        "DELETE FROM t WHERE ws = ? OR k = ?",
        "UPDATE t SET i = i + ? WHERE ws = ?",
        "INSERT INTO t (ws, k) VALUES (?, lower(?))",
    ],
)
def test_other_shapes_are_refused_not_guessed(sql: str) -> None:
    with pytest.raises(ValueError, match="no one-statement form"):
        bulk.statement(sql, 2)


def test_one_row_and_no_rows_go_the_plain_way(tmp_path: Path) -> None:
    conns = pair(tmp_path)
    one: Sequence[Any] = [("w", "k", 1.0, 1, "s")]
    both(conns, UPSERT, list(one))
    both(conns, UPSERT, [])
    assert table(conns[0]) == table(conns[1])


@pytest.mark.parametrize("count", [2, 3, 255, 256, 257, 1300])
def test_batches_are_cut_into_few_statement_sizes(tmp_path: Path, count: int) -> None:
    conns = pair(tmp_path)
    both(conns, UPSERT, rows(count, 8, keys=count // 2 + 1))
    assert table(conns[0]) == table(conns[1])
    sizes = [sql.count("(?, ?, ?, ?, ?)") for sql, _ in bulk.statements(UPSERT, rows(count, 8))]
    assert sum(sizes) == count and max(sizes) <= bulk.MAX_ROWS
    assert all(size & (size - 1) == 0 for size in sizes)  # powers of two: few shapes to cache


def test_wide_rows_stay_under_sqlites_parameter_limit(tmp_path: Path) -> None:
    wide = "INSERT INTO w (" + ", ".join(f"c{i}" for i in range(200)) + ") VALUES ("
    wide += ", ".join("?" * 200) + ")"
    params = [len(p) for _, p in bulk.statements(wide, [tuple(range(200))] * 500)]
    assert sum(params) == 500 * 200 and max(params) <= bulk.MAX_PARAMETERS
    # A SQLite built before 3.32 takes 999 parameters: the connection's own limit is used.
    conn = SqliteConnection(str(tmp_path / "old.db"))
    conn.execute("CREATE TABLE w (" + ", ".join(f"c{i}" for i in range(200)) + ")")
    conn._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    with conn.transaction():
        conn.executemany(wide, [tuple(range(i, i + 200)) for i in range(37)], bulk=True)
    assert conn.execute("SELECT COUNT(*), SUM(c0) FROM w") == [(37, sum(range(37)))]


@pytest.mark.parametrize("sql", [DELETE, DELETE_EXACT, UPDATE])
def test_keyed_statements_look_rows_up_by_index(tmp_path: Path, sql: str) -> None:
    # A plan that scans the whole table per statement made 10,000 wake-ups among 100,000
    # waiting instances three times slower: every delete and update must search by the key.
    conn = SqliteConnection(str(tmp_path / "plan.db"))
    conn.execute(SCHEMA)
    for one, params in bulk.statements(sql, [r[: bulk.shape(sql).per_row] for r in rows(3, 9)]):
        plan = " / ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {one}", params))
        assert "SEARCH t USING" in plan and "SCAN t" not in plan, plan
