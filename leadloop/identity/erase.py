"""Erasure (GDPR art. 17): one call removes a person from every table that holds them.

The profile, the profiles merged into it, their events (also those still waiting in the log to
be processed), identities, traits, account links,
scores and ledger, timers, conversion match keys, journey instances, paths and memberships,
sends, suppressions and message records, and every effect not yet delivered. Delivered
outbox rows are kept only as keys (their payloads are blanked) so a replay cannot resend them.
`erase_anonymous_id` does the same for a person named only by an anonymous id, and lists the id
as erased for good (`erased_ids`), so a sender's late events of it start nobody again.
"""

from __future__ import annotations

from collections.abc import Iterable

from leadloop.digest import sha256_hex
from leadloop.identity import queries
from leadloop.log.batch import Conn

_MOVE_EPOCH = "UPDATE erasure_epoch SET n = n + 1 WHERE id = 1"

# (table, profile column) for every table keyed by profile; tables of stages that are not
# installed yet are skipped when absent.
_BY_PROFILE = (
    ("events", "profile_id"),
    ("identities", "profile_id"),
    ("identity_audit", "profile_id"),
    ("identity_audit", "other_id"),
    ("account_members", "profile_id"),
    ("scores", "profile_id"),
    ("score_ledger", "profile_id"),
    ("timers", "profile_id"),
    ("conversion_keys", "profile_id"),
    ("conversion_log", "profile_id"),
    ("journey_instances", "profile_id"),
    ("journey_path", "profile_id"),
    ("journey_profiles", "profile_id"),
    ("sends", "profile_id"),
    ("suppressions", "profile_id"),
    ("message_records", "profile_id"),
)


def erase_profile(conn: Conn, workspace: str, profile_id: str) -> int:
    """Erase the profile and everything merged into it; returns the profiles erased.

    The epoch (migration 0008) moves first: on PostgreSQL the row lock it takes orders this
    transaction with the processor's batch writes (`log.store.cursor_and_epoch`), so a batch
    that read the person before this commit cannot write them back after it."""
    conn.execute(_MOVE_EPOCH)
    return _erase(conn, workspace, profile_id)


def erase_anonymous_id(conn: Conn, workspace: str, anonymous_id: str, at: float) -> int:
    """Erase the person an anonymous id names, for a sender that knows them only by it (a
    HubSpot privacy deletion): the profile the identity graph gives it, as `erase_profile`
    does, and the events carrying it still waiting in the log, also when none has been
    processed yet. Returns the profiles erased; 0 when nobody has the id (a retry, a contact
    leadloop never heard of), and then nothing but the epoch and the erased ids change.

    The id joins `erased_ids` (a digest of it, erased at `at`): the sender said the person is
    gone for good, so events of the id it delivers later are dropped (`erased_among`).

    The epoch moves before the look-up, so on PostgreSQL a batch that is writing the person's
    first profile commits before it, and is found; one that has only read their events is
    decided again, without them."""
    conn.execute(_MOVE_EPOCH)
    found = queries.lookup(conn, workspace, "anonymous_id", anonymous_id)
    erased = 0 if found is None else _erase(conn, workspace, found)
    conn.execute(
        "DELETE FROM events WHERE workspace_id = ? AND profile_id IS NULL AND anonymous_id = ?",
        (workspace, anonymous_id),
    )
    conn.execute(
        "INSERT INTO erased_ids (workspace_id, digest, erased_at) VALUES (?, ?, ?) "
        "ON CONFLICT (workspace_id, digest) DO NOTHING",
        (workspace, _digest(anonymous_id), at),
    )
    return erased


def erased_among(conn: Conn, workspace: str, anonymous_ids: Iterable[str]) -> set[str]:
    """Those of `anonymous_ids` that `erase_anonymous_id` erased for good."""
    by_digest = {_digest(a): a for a in set(anonymous_ids)}
    found: set[str] = set()
    digests = sorted(by_digest)
    for start in range(0, len(digests), 500):
        chunk = digests[start : start + 500]
        rows = conn.execute(
            f"SELECT digest FROM erased_ids WHERE workspace_id = ? "  # placeholders only
            f"AND digest IN ({','.join('?' * len(chunk))})",
            (workspace, *chunk),
        )
        found |= {by_digest[str(r[0])] for r in rows}
    return found


def _digest(anonymous_id: str) -> str:
    """What `erased_ids` keeps of an id: enough to recognise it, nothing to read it from."""
    return sha256_hex(f"anonymous_id:{anonymous_id}")


def _erase(conn: Conn, workspace: str, profile_id: str) -> int:
    ids = [profile_id]
    ids += [
        str(r[0])
        for r in conn.execute(
            "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into = ?",
            (workspace, profile_id),
        )
    ]
    tables = _existing_tables(conn)
    _erase_waiting_events(conn, workspace, ids)
    if "parked_events" in tables:
        # A parked event is one still waiting: gone from the log, its row (whose error message
        # may quote the event) goes too.
        conn.execute(
            "DELETE FROM parked_events WHERE workspace_id = ? "
            "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.seq = parked_events.seq)",
            (workspace,),
        )
    for pid in ids:
        for table, column in _BY_PROFILE:
            if table in tables:
                conn.execute(
                    f"DELETE FROM {table} WHERE workspace_id = ? AND {column} = ?",  # constants
                    (workspace, pid),
                )
        undelivered = (
            "SELECT id FROM outbox WHERE workspace_id = ? AND profile_id = ? "
            "AND status != 'delivered'"
        )
        conn.execute(f"DELETE FROM outbox_payloads WHERE id IN ({undelivered})", (workspace, pid))
        conn.execute(f"DELETE FROM outbox WHERE id IN ({undelivered})", (workspace, pid))
        conn.execute(
            "UPDATE outbox_payloads SET payload = '{}' WHERE id IN "
            "(SELECT id FROM outbox WHERE workspace_id = ? AND profile_id = ?)",
            (workspace, pid),
        )
        conn.execute("DELETE FROM profiles WHERE workspace_id = ? AND id = ?", (workspace, pid))
    return len(ids)


def _erase_waiting_events(conn: Conn, workspace: str, ids: list[str]) -> None:
    """The person's events still waiting in the log: not processed yet, so not attributed to
    them (`profile_id` is null), found by the user and anonymous ids the graph gives them.
    Left there, the processor would later start a new profile from them."""
    marks = ",".join("?" * len(ids))
    rows = conn.execute(
        f"SELECT type, value FROM identities WHERE workspace_id = ? AND profile_id IN ({marks}) "
        "AND type IN ('user_id', 'anonymous_id')",
        (workspace, *ids),
    )
    for kind in ("user_id", "anonymous_id"):  # the events table's columns of the same names
        values = [str(value) for found, value in rows if found == kind]
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            conn.execute(
                f"DELETE FROM events WHERE workspace_id = ? AND profile_id IS NULL "  # constants
                f"AND {kind} IN ({','.join('?' * len(chunk))})",
                (workspace, *chunk),
            )


def _existing_tables(conn: Conn) -> set[str]:
    if conn.dialect == "sqlite":
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    return {str(r[0]) for r in rows}
