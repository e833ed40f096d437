"""Many rows in one SQLite statement: the batch travels as one JSON array read by `json_each`.

Why: Python's `sqlite3` gives up the interpreter lock around every row's step of an
`executemany` and must win it back before the next row. While another thread runs Python (the
processor deciding the next batch as this one is written), every row waits up to the switch
interval for it: 5,000 rows took seconds instead of 10 ms (docs/benchmarks.md, "Writing one
batch while the next is decided"). One statement is one step, so the lock is given up once.

Only three statement shapes are rewritten, and any other raises `ValueError` (a programming
error, caught by the tests), so a caller never silently gets different SQL semantics:

* `INSERT INTO t (cols) VALUES (…) [ON CONFLICT …]` → `INSERT INTO t (cols) SELECT … FROM
  json_each(?) WHERE true [ON CONFLICT …]`: rows are inserted, or upserted, one after the
  other in array order, exactly as `executemany` does (`WHERE true` is SQLite's documented
  way to keep `ON CONFLICT` from parsing as a join constraint);
* `DELETE FROM t WHERE a = ? AND b = ?` → `DELETE FROM t WHERE (a, b) IN (SELECT … FROM
  json_each(?))`: the same rows go, in any order;
* `UPDATE t SET x = ?, y = ? WHERE a = ?` → `UPDATE t SET … FROM (SELECT value FROM
  json_each(?)) AS j WHERE t.a = …`. Where two rows name the same key, `executemany` leaves the
  last one's values; SQLite documents the source row `UPDATE … FROM` uses as arbitrary (this
  build happens to apply the last), so `rows_for` keeps only the last.

What a row may hold: text, integers, finite floats, booleans and None. A float goes through
JSON and back unchanged (checked on 900,000 random doubles with this SQLite); a NUL character
would cut a JSON string short, so a batch whose JSON holds one is written row by row instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_PLACEHOLDER = re.compile(r"\?")
_INSERT = re.compile(
    r"\s*(INSERT INTO \w+ \([\w\s,]+\))\s+VALUES \(([^()]*)\)(\s+ON CONFLICT .*)?\s*", re.S
)
_DELETE = re.compile(r"\s*DELETE FROM (\w+) WHERE (\w+ = \?(?: AND \w+ = \?)*)\s*", re.S)
_UPDATE = re.compile(
    r"\s*UPDATE (\w+) SET (\w+ = \?(?:, \w+ = \?)*) WHERE (\w+ = \?(?: AND \w+ = \?)*)\s*", re.S
)
_NUL = b"\\u0000"


@functools.lru_cache(maxsize=256)
def statement(sql: str) -> tuple[str, int]:
    """The one-statement form of `sql` and, for an UPDATE, how many leading parameters are SET
    values (the rest are the key); 0 for the other shapes."""
    found = _INSERT.fullmatch(sql)
    if found:
        head, values, conflict = found.groups()
        count = iter(range(values.count("?")))
        select = _PLACEHOLDER.sub(lambda _: f"value->>{next(count)}", values)
        return f"{head} SELECT {select} FROM json_each(?) WHERE true{conflict or ''}", 0
    found = _DELETE.fullmatch(sql)
    if found:
        table, where = found.groups()
        columns = [part.split("=")[0].strip() for part in where.split(" AND ")]
        picked = ", ".join(f"value->>{i}" for i in range(len(columns)))
        return (
            f"DELETE FROM {table} WHERE ({', '.join(columns)}) IN "
            f"(SELECT {picked} FROM json_each(?))",
            0,
        )
    found = _UPDATE.fullmatch(sql)
    if found:
        table, sets, where = found.groups()
        targets = [part.split("=")[0].strip() for part in sets.split(", ")]
        keys = [part.split("=")[0].strip() for part in where.split(" AND ")]
        assignments = ", ".join(f"{c} = j.value->>{i}" for i, c in enumerate(targets))
        match = " AND ".join(
            f"{table}.{c} = j.value->>{i}" for i, c in enumerate(keys, len(targets))
        )
        return (
            f"UPDATE {table} SET {assignments} FROM (SELECT value FROM json_each(?)) AS j "
            f"WHERE {match}",
            len(targets),
        )
    raise ValueError(f"no one-statement form for: {sql.strip()[:120]}")


def rows_for(sql: str, rows: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
    """The rows as the one-statement form must see them: for an UPDATE, the last row per key."""
    _, values = statement(sql)
    if not values:
        return rows
    last: dict[tuple[Any, ...], Sequence[Any]] = {}
    for row in rows:
        key = tuple(row[values:])
        last.pop(key, None)  # re-inserted: the survivor keeps its place among the others
        last[key] = row
    return list(last.values())


def payload(rows: Sequence[Sequence[Any]]) -> str | None:
    """The rows as one JSON array, or None when they must be written one by one (a NUL)."""
    encoded = _encoder.encode(rows)
    return None if _NUL in encoded else encoded.decode()
