"""Many rows in one SQLite statement: the batch's rows bound to one multi-row `VALUES` list.

Why: Python's `sqlite3` gives up the interpreter lock around every row's step of an
`executemany` and must win it back before the next row. While another thread runs Python (the
processor deciding the next batch as this one is written), every row waits up to the switch
interval for it: 5,000 rows took seconds instead of 10 ms (docs/benchmarks.md, "Writing one
batch while the next is decided"). One statement is one step, so the lock is given up once.

Why `VALUES` and not one JSON array read by `json_each` (the first form of this module): the
writer thread became the busier of the two, and `json_each` made SQLite parse every row's JSON
once per column. Upserting 40,000 journey instances (13 columns) cost 15–23 µs of CPU per row
that way, 9–13 with `executemany` and 9–12 with 50–250 rows per `VALUES` statement
(docs/benchmarks.md, Journeys, run 8). Bound parameters also keep every value's type and bytes
exactly (a NUL in a string, a float's last bit), which JSON needed special cases for.

Only three statement shapes are rewritten, and any other raises `ValueError` (a programming
error, caught by the tests), so a caller never silently gets different SQL semantics:

* `INSERT INTO t (cols) VALUES (…) [ON CONFLICT …]` → the same with `VALUES (…), (…), …`:
  rows are inserted, or upserted, one after the other in list order, exactly as
  `executemany` does;
* `DELETE FROM t WHERE a = ? AND b = ?` → `DELETE FROM t WHERE (a, b) IN (SELECT column1,
  column2 FROM (VALUES (?, ?), …))`: the same rows go, in any order;
* `UPDATE t SET x = ?, y = ? WHERE a = ?` → `UPDATE t SET x = j.column1, … FROM (VALUES …) AS
  j WHERE t.a = j.column3`. Where two rows name the same key, `executemany` leaves the last
  one's values; SQLite documents the source row `UPDATE … FROM` uses as arbitrary, so
  `rows_for` keeps only the last.

Statements carry a power of two of rows, at most `MAX_ROWS` (and the connection's limit on
parameters):
a batch of 1,300 rows is 5 × 256 + 16 + 4, so each shape compiles to a handful of statements
that `sqlite3`'s statement cache keeps.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

MAX_ROWS = 256
"""Rows per statement at most. Larger statements gained nothing measurable and compile slower."""
MAX_PARAMETERS = 32_766
"""SQLite's default limit on parameters per statement since 3.32 (999 before)."""
_INSERT = re.compile(
    r"\s*(INSERT INTO \w+ \([\w\s,]+\))\s+VALUES \(([^()]*)\)(\s+ON CONFLICT .*)?\s*", re.S
)
_DELETE = re.compile(r"\s*DELETE FROM (\w+) WHERE (\w+ = \?(?: AND \w+ = \?)*)\s*", re.S)
_UPDATE = re.compile(
    r"\s*UPDATE (\w+) SET (\w+ = \?(?:, \w+ = \?)*) WHERE (\w+ = \?(?: AND \w+ = \?)*)\s*", re.S
)


class Shape(NamedTuple):
    """A statement split around its row of parameters: `head + rows + tail`, each row being
    `row`; `values` leading parameters of a row are SET values (UPDATE only, else 0)."""

    head: str
    row: str
    tail: str
    per_row: int
    values: int


@functools.lru_cache(maxsize=256)
def shape(sql: str) -> Shape:
    found = _INSERT.fullmatch(sql)
    if found:
        head, values, conflict = found.groups()
        return Shape(f"{head} VALUES ", f"({values})", conflict or "", values.count("?"), 0)
    found = _DELETE.fullmatch(sql)
    if found:
        table, where = found.groups()
        columns = [part.split("=")[0].strip() for part in where.split(" AND ")]
        row = "(" + ", ".join("?" * len(columns)) + ")"
        # `IN (VALUES …)` directly makes SQLite scan the whole table; through a subquery it
        # looks each row up by the table's index (test_bulk checks the plan).
        picked = ", ".join(f"column{i}" for i in range(1, len(columns) + 1))
        head = f"DELETE FROM {table} WHERE ({', '.join(columns)}) IN (SELECT {picked} FROM (VALUES "
        return Shape(head, row, "))", len(columns), 0)
    found = _UPDATE.fullmatch(sql)
    if found:
        table, sets, where = found.groups()
        targets = [part.split("=")[0].strip() for part in sets.split(", ")]
        keys = [part.split("=")[0].strip() for part in where.split(" AND ")]
        # SQLite names the columns of a VALUES list column1, column2, ...
        assignments = ", ".join(f"{c} = j.column{i}" for i, c in enumerate(targets, 1))
        match = " AND ".join(
            f"{table}.{c} = j.column{i}" for i, c in enumerate(keys, len(targets) + 1)
        )
        per_row = len(targets) + len(keys)
        row = "(" + ", ".join("?" * per_row) + ")"
        head = f"UPDATE {table} SET {assignments} FROM (VALUES "
        return Shape(head, row, f") AS j WHERE {match}", per_row, len(targets))
    raise ValueError(f"no one-statement form for: {sql.strip()[:120]}")


@functools.lru_cache(maxsize=2048)
def statement(sql: str, count: int = 2) -> str:
    """`sql` rewritten to write `count` rows in one statement."""
    form = shape(sql)
    return form.head + ", ".join([form.row] * count) + form.tail


def rows_for(sql: str, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """The rows as the one-statement form must see them: for an UPDATE, the last row per key."""
    values = shape(sql).values
    if not values:
        return rows
    last: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        key = tuple(row[values:])
        last.pop(key, None)  # re-inserted: the survivor keeps its place among the others
        last[key] = row
    return list(last.values())


def statements(
    sql: str, rows: Sequence[Sequence[Any]], max_parameters: int = MAX_PARAMETERS
) -> Iterator[tuple[str, list[Any]]]:
    """(statement, parameters) pairs that together write `rows` in order (`rows_for` first),
    none with more than `max_parameters` (the connection's `SQLITE_LIMIT_VARIABLE_NUMBER`)."""
    per_row = max(1, shape(sql).per_row)
    most = max(1, min(MAX_ROWS, max_parameters // per_row))
    largest = 1 << (most.bit_length() - 1)  # a power of two, so few distinct statements
    done = 0
    while done < len(rows):
        count = min(largest, 1 << ((len(rows) - done).bit_length() - 1))
        part = rows[done : done + count]
        yield statement(sql, count), list(itertools.chain.from_iterable(part))
        done += count
