"""Reading an ad-spend export: a CSV with a header row naming `date`, `source`, `amount` and
`currency` (and, optionally, `campaign`), one row per day, source and campaign, as the ad
platforms export it. Pure: text in, rows or errors out.

A file is taken whole or not at all: the first rows that cannot be read are reported with
their line and column, and nothing is imported, so a half-imported export never skews CAC.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date

from leadloop.analytics.metrics import amount as read_amount

REQUIRED = ("date", "source", "amount", "currency")
OPTIONAL = ("campaign",)
MAX_ROWS = 100_000
MAX_TEXT = 200
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_ERRORS_SHOWN = 20


@dataclass(frozen=True)
class SpendRow:
    day: str
    """`YYYY-MM-DD` (UTC day, as the platforms report)."""
    source: str
    campaign: str
    currency: str
    amount: float


class SpendFileError(ValueError):
    """The export cannot be imported; the message names each line and column at fault."""


def parse_spend(text: str, name: str = "spend.csv") -> list[SpendRow]:
    """The rows of the export, the same key twice added together (a platform that splits a
    campaign's day over two lines means both)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise SpendFileError(f"{name}: empty file, expected a header row") from None
    except csv.Error as error:
        raise SpendFileError(f"{name}:1: {error}") from None
    columns = [h.strip().lstrip("\ufeff").casefold() for h in header]
    missing = [c for c in REQUIRED if c not in columns]
    unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
    if missing or unknown or len(set(columns)) != len(columns):
        raise SpendFileError(
            f"{name}:1: the header must name {', '.join(REQUIRED)} (and may name campaign), "
            f"once each; it has {', '.join(repr(c) for c in columns) or 'nothing'}"
        )
    where = {c: columns.index(c) for c in columns}
    rows: dict[tuple[str, str, str, str], float] = {}
    errors: list[str] = []
    # A row is named by the line it starts on: a quoted cell may hold a line break, so rows
    # and lines part ways after one.
    number, count = reader.line_num + 1, 0
    try:
        for record in reader:
            line, number = number, reader.line_num + 1
            if not any(cell.strip() for cell in record):
                continue  # a blank line, as spreadsheets leave at the end
            count += 1
            if count > MAX_ROWS:
                raise SpendFileError(f"{name}: more than {MAX_ROWS:,} rows; split the file")
            row, problems = _row(record, where)
            errors.extend(f"{name}:{line}: {p}" for p in problems)
            if row is not None and not problems:
                key = (row.day, row.source, row.campaign, row.currency)
                rows[key] = rows.get(key, 0.0) + row.amount
    except csv.Error as error:
        errors.append(f"{name}:{number}: {error}")
    if errors:
        more = len(errors) - _ERRORS_SHOWN
        shown = errors[:_ERRORS_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
        raise SpendFileError("\n".join(shown))
    return [SpendRow(d, s, c, cur, amount) for (d, s, c, cur), amount in sorted(rows.items())]


def _row(record: list[str], where: dict[str, int]) -> tuple[SpendRow | None, list[str]]:
    if len(record) != len(where):
        return None, [f"expected {len(where)} columns, found {len(record)}"]
    cell = {c: record[i].strip() for c, i in where.items()}
    problems = []
    for column in ("source", "campaign", "date", "currency", "amount"):
        value = cell.get(column, "")
        if len(value) > MAX_TEXT:
            problems.append(f"{column}: at most {MAX_TEXT} characters")
        elif any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            problems.append(f"{column}: control characters are not allowed")
    try:
        day = date.fromisoformat(cell["date"]).isoformat() if len(cell["date"]) == 10 else None
    except ValueError:
        day = None
    if day is None:
        problems.append(f"date: expected YYYY-MM-DD, got {cell['date'][:40]!r}")
    if not cell["source"]:
        problems.append("source: must not be empty (the ad platform, such as meta)")
    if not _CURRENCY.fullmatch(cell["currency"]):
        problems.append(f"currency: expected a three-letter code, got {cell['currency'][:40]!r}")
    amount = read_amount(cell["amount"])
    if amount is None or amount < 0:
        problems.append(f"amount: expected a number of 0 or more, got {cell['amount'][:40]!r}")
    if problems or day is None or amount is None:
        return None, problems
    return SpendRow(
        day, cell["source"].casefold(), cell.get("campaign", ""), cell["currency"].upper(), amount
    ), []
