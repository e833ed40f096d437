"""Planner statistics on PostgreSQL, kept fresh by the engine itself.

The processor looks rows up in bulk (`... IN (500 values)`). A table the planner believes tiny
(created empty, never analysed) gets a plan that scans every row of the index prefix for each
lookup: measured on the journeys benchmark, one lookup of 500 identities took seconds at 160,000
rows. Autovacuum's analyse normally prevents that, but it runs at most once a minute and some
servers (this project's CI machine among them) run with it off. So the engine analyses the
tables it writes when enough rows changed since their last analysis, with the rule autovacuum
uses (50 rows + 10 % of the table); where autovacuum already did, this finds nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable

from leadloop.storage.db import PostgresConnection
from leadloop.storage.upkeep import Upkeep

_STALE = (
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
    "AND n_mod_since_analyze > 50 + 0.1 * GREATEST(n_live_tup, 0)"
)


def analyze_stale(conn: PostgresConnection) -> list[str]:
    """ANALYZE every table of the schema that changed enough since it was last analysed."""
    tables = [str(row[0]) for row in conn.execute(_STALE)]
    for table in tables:
        conn.execute(f'ANALYZE "{table}"')  # names come from the catalogue, quoted
    return tables


def analyzer(
    connect: Callable[[], PostgresConnection], interval: float = 5.0
) -> Upkeep[PostgresConnection]:
    return Upkeep("leadloop-analyze", connect, analyze_stale, interval)
