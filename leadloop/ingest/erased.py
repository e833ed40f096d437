"""A HubSpot delivery committed in one transaction: its events, less those of contacts erased
for good, then its privacy deletions.

HubSpot does not order deliveries and retries refused ones, so a contact's events can arrive
after its `contact.privacyDeletion`: a late property change, the `contact.deletion` HubSpot
also sends to an app subscribed to both, a retry of a delivery refused before the deletion.
Stored, any of them would start the person again; the deleted contact can never come back (a
contact created later gets a new id), so they are dropped, found in `erased_ids`
(`identity.erase.erased_among`).

The check and the insert share a transaction that also holds the erasure epoch's row
(migration 0008): shared on PostgreSQL when the delivery erases nobody, so a deletion of the
same contact committing at the same moment either comes first, and its id is seen, or waits for
these events and deletes them with the rest of the person's waiting events. On SQLite one
writer thread runs both, one after the other.

HubSpot is not the only sender of a contact's id: a sender that links HubSpot's objects to
people (a `standard` source, the tracking API) sends it too, and its events would start the
person again just as well. So any request with a message of a HubSpot id is committed this way
(`may_name_erased`); the others, which no deletion can name, keep the group commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leadloop.identity.erase import erase_anonymous_id, erased_among
from leadloop.ingest.hubspot import ANONYMOUS_PREFIX
from leadloop.ingest.model import Accepted
from leadloop.log.batch import Conn
from leadloop.log.writer import INSERT_EVENT, event_row


@dataclass(frozen=True, slots=True)
class Committed:
    stored: int
    """Messages appended to the log (a retry's are there already and stay once)."""
    dropped: int
    """Messages of contacts erased for good, not stored."""
    erased: tuple[int, ...]
    """Profiles erased by each of the delivery's privacy deletions, in order."""


def may_name_erased(messages: Sequence[Accepted]) -> bool:
    """Whether a message carries an id that a privacy deletion may have erased for good: only
    HubSpot contacts are (`ingest.hubspot`), so only ids of HubSpot's form are looked up."""
    return any(i.startswith(ANONYMOUS_PREFIX) for m in messages for i in _anonymous_ids(m))


def _anonymous_ids(message: Accepted) -> tuple[str, ...]:
    """The anonymous ids a message names: an alias's `previousId` too, which the identity graph
    gives the alias's user (an unknown one as an anonymous id), so a late alias from an erased
    contact would link the id to someone again."""
    return tuple(i for i in (message.anonymous_id, message.previous_id) if i is not None)


def commit_delivery(
    conn: Conn,
    workspace: str,
    messages: Sequence[Accepted],
    erase: Sequence[str],
    at: float,
) -> Committed:
    """Store `messages` but those naming erased anonymous ids, then erase each id in `erase`
    (`identity.erase.erase_anonymous_id`), in the caller's transaction."""
    if erase:
        # Taken before any read: the epoch moves anyway with the first erasure, and taking the
        # row exclusively at once keeps two such deliveries from each holding it shared and
        # then waiting for the other to let go.
        conn.execute("UPDATE erasure_epoch SET n = n + 1 WHERE id = 1")
    elif conn.dialect == "postgres":
        conn.execute("SELECT n FROM erasure_epoch WHERE id = 1 FOR SHARE")
    ids = [i for m in messages for i in _anonymous_ids(m)]
    gone = erased_among(conn, workspace, ids) if ids else set()
    kept = [m for m in messages if gone.isdisjoint(_anonymous_ids(m))]
    if kept:
        conn.executemany(INSERT_EVENT, [event_row(workspace, m) for m in kept], bulk=True)
    erased = tuple(erase_anonymous_id(conn, workspace, a, at) for a in erase)
    return Committed(len(kept), len(messages) - len(kept), erased)
