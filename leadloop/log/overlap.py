"""Whether a batch decided while the previous one was being written read anything stale.

The processor decides batch N+1 while the writer commits batch N (`processor.step`), so N+1's
reads may come from before N's commit. Every read a stage makes is keyed by a profile (its
score state, journey instances, memberships, sends, suppressions, match keys), by an identity
(who owns an email, a user id) or by an account, and the identity batch records each key it
looked up and each profile it loaded. If N+1 read none of the keys N touched, what it read is
what it would have read after N's commit, and its decisions stand. Otherwise it is decided
again once N is committed. A stage that writes beyond its batch's profiles (a journey
migration or removal updates every instance of a journey) marks the batch as a `barrier`.
"""

from __future__ import annotations

from leadloop.identity.service import IdentityBatch
from leadloop.log.batch import Batch


def depends_on(later: Batch, earlier: Batch) -> bool:
    """True when `later` may have read something `earlier` writes."""
    if earlier.barrier:
        return True
    if not earlier.shared_writes.isdisjoint(later.shared_reads):
        return True
    before, after = earlier.identity, later.identity
    if not _touched(before).isdisjoint(_read(after)):
        return True
    if not before.new_identities.keys().isdisjoint(after.owners.keys()):
        return True
    accounts = after.accounts.keys() | after.accounts_read
    return not before.accounts.keys().isdisjoint(accounts)


def _touched(batch: IdentityBatch) -> set[tuple[str, str]]:
    """Every profile the batch loaded or made (all a stage can write rows for), and both sides
    of its merges."""
    touched = set(batch.profiles)
    touched.update(batch.merged)
    touched.update((ws, survivor) for (ws, _), survivor in batch.merged.items())
    touched.update(batch.redirects)
    return touched


def _read(batch: IdentityBatch) -> set[tuple[str, str]]:
    """Every profile whose rows the batch may have read: loaded, redirected, asked about its
    user ids, or found as the owner of an identity."""
    read = set(batch.profiles)
    read.update(batch.redirects)
    read.update(batch.user_ids)
    read.update((ws, pid) for (ws, _), pid in batch.owners.items() if pid is not None)
    return read
