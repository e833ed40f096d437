"""`leadloop replay`: rebuild every derived table from the event log.

The log is the source of truth; profiles, the identity graph, accounts, scores, the ledger and
timers are derived from it. Rebuilding clears them and moves the processor's cursor back to
the start, and the processor replays the log. Effects stay exactly-once because every key is
derived from the log (profile ids from sequence numbers, webhook ids and emitted events from
message ids, timer events from key and due time): replayed outbox rows and internal events
collide with the ones already there and are dropped.
"""

from __future__ import annotations

from leadloop.log import park
from leadloop.log.batch import Conn
from leadloop.log.processor import CURSOR

DERIVED = (
    "profiles",
    "identities",
    "identity_audit",
    "accounts",
    "account_members",
    "scores",
    "score_ledger",
    "timers",
    "conversion_keys",
    "conversion_log",
    "conversion_skips",
    "journey_instances",
    "journey_profiles",
    "journey_path",
    "sends",
    "suppressions",
    "variant_stats",
    "parked_events",  # the replay parks again whatever still fails
)


def reset_derived_state(conn: Conn) -> int:
    """Clear derived state and rewind the processor; returns the events to replay."""
    for table in DERIVED:
        conn.execute(f"DELETE FROM {table}")  # table names are constants above
    # Every event is attributed again as the replay reaches it, the engine's own too (they
    # name their profile in the body, and ids are derived from the log, so the rebuilt profile
    # has the same id): an internal event kept the survivor of every later merge, and a
    # decision that reads the log up to its event (a best-time wait's opens, a channel's
    # history) found, in its own batch, events of a profile merged into it only later.
    conn.execute("UPDATE events SET profile_id = NULL WHERE profile_id IS NOT NULL")
    conn.execute("DELETE FROM cursors WHERE name IN (?, ?)", (CURSOR, park.HOLD))
    # A rescore under way (`scoring.rescoring.record_name`) is moot: the replay scores every
    # profile under the live models; its record would have the next one skip profiles.
    conn.execute("DELETE FROM cursors WHERE name LIKE ?", ("rescore:%",))
    return int(conn.execute("SELECT COUNT(*) FROM events")[0][0])
