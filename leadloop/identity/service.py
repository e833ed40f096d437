"""The identity stage's shell: a per-batch unit of work over the graph.

The processor handles a batch of events in memory: identity owners and profiles are
loaded in bulk on first use, changed in memory, and written back in the batch's single
transaction together with the cursor. Nothing here is visible to readers until that commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec

from leadloop.identity import decide
from leadloop.identity.model import Account, Identity, Profile
from leadloop.log.model import Event
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_profile_decoder = msgspec.json.Decoder(Profile)
_encoder = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])
_CHUNK = 500


@dataclass
class AuditEntry:
    workspace_id: str
    kind: str
    profile_id: str
    other_id: str
    reason: str
    event_seq: int
    at: float


@dataclass
class IdentityBatch:
    """Everything the identity stage changes while processing one batch."""

    conn: Conn
    default_region: str | None = None
    owners: dict[tuple[str, Identity], str | None] = field(default_factory=dict)
    profiles: dict[tuple[str, str], Profile] = field(default_factory=dict)
    new_identities: dict[tuple[str, Identity], str] = field(default_factory=dict)
    new_by_owner: dict[tuple[str, str], set[Identity]] = field(default_factory=dict)
    """`new_identities` by owning profile, kept in step with it: `identities_of_profile` runs
    for every conversion and MQL webhook, and scanning the whole batch's new identities each
    time made a batch quadratic."""
    dirty_profiles: set[tuple[str, str]] = field(default_factory=set)
    created: set[tuple[str, str]] = field(default_factory=set)
    """Profiles first made in this batch: nothing is stored for them yet, so the stages need
    not look anything up."""
    merged: dict[tuple[str, str], str] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    event_profiles: list[tuple[str, int]] = field(default_factory=list)
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    accounts_read: set[tuple[str, str]] = field(default_factory=set)
    """Every account looked up, found or not (`log.overlap` compares them across batches)."""
    members: set[tuple[str, str, str]] = field(default_factory=set)
    user_ids: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    redirects: dict[tuple[str, str], str] = field(default_factory=dict)
    """Stored profiles merged into another (`merged_into`), for events naming the old id."""
    keys: dict[int, list[Identity]] = field(default_factory=dict)
    """Each event's identifiers by `seq`: prefetch and resolve both need them, normalised once."""
    stored_identities: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)
    """(type, value) stored for a profile, loaded in bulk by a stage (`load_identities`) so that
    `identities_of_profile` does not query once per profile."""

    def identities(self, event: Event) -> list[Identity]:
        found = self.keys.get(event.seq)
        if found is None:
            found = self.keys[event.seq] = decide.identities_of(event, self.default_region)
        return found

    # -- loading -----------------------------------------------------------------------

    def prefetch(self, events: list[Event]) -> None:
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        internal: dict[str, set[str]] = defaultdict(set)
        for event in events:
            if event.type == "internal":
                # Engine events (timers, emitted events) name their profile and carry no
                # identifiers: no graph lookup, and no user ids (they never merge anything).
                pid = event.body.get("profileId")
                if isinstance(pid, str):
                    internal[event.workspace_id].add(pid)
                continue
            for key in self.identities(event):
                if (event.workspace_id, key) not in self.owners:
                    wanted[(event.workspace_id, key.type)].add(key.value)
            if event.previous_id:
                for kind in ("user_id", "anonymous_id"):
                    wanted[(event.workspace_id, kind)].add(event.previous_id)
        profile_ids: dict[str, set[str]] = defaultdict(set)
        for (workspace, kind), values in wanted.items():
            listed = sorted(values)
            for key_value in listed:
                self.owners.setdefault((workspace, Identity(kind, key_value)), None)  # type: ignore[arg-type]
            for i in range(0, len(listed), _CHUNK):
                chunk = listed[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    "SELECT value, profile_id FROM identities WHERE workspace_id = ? "
                    f"AND type = ? AND value IN ({marks})",
                    (workspace, kind, *chunk),
                )
                for value, profile_id in rows:
                    self.owners[(workspace, Identity(kind, value))] = profile_id  # type: ignore[arg-type]
                    profile_ids[workspace].add(profile_id)
        for workspace, ids in profile_ids.items():
            self._load_profiles(workspace, [i for i in ids if (workspace, i) not in self.profiles])
        for workspace, ids in internal.items():
            wanted_ids = [i for i in ids if (workspace, i) not in self.profiles]
            self._load_profiles(workspace, wanted_ids, user_ids=False)

    def _load_profiles(self, workspace: str, ids: list[str], *, user_ids: bool = True) -> None:
        """Profiles by id; with `user_ids`, also the user ids each holds (which `resolve` needs
        to refuse merging two known people; it loads them itself for a profile loaded without)."""
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            if not chunk:
                continue
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT id, state, merged_into FROM profiles WHERE workspace_id = ? "
                f"AND id IN ({marks})",
                (workspace, *chunk),
            )
            for pid, state, merged_into in rows:
                self.profiles[(workspace, pid)] = _profile_decoder.decode(state)
                if merged_into:
                    self.redirects[(workspace, pid)] = str(merged_into)
        if ids and user_ids:
            self._load_user_ids(workspace, ids)

    def _load_user_ids(self, workspace: str, ids: list[str]) -> None:
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT profile_id, value FROM identities WHERE workspace_id = ? "
                f"AND type = 'user_id' AND profile_id IN ({marks})",
                (workspace, *chunk),
            )
            for pid in chunk:
                self.user_ids.setdefault((workspace, pid), set())
            for pid, value in rows:
                self.user_ids[(workspace, pid)].add(value)

    def live_profile(self, workspace: str, profile_id: str) -> Profile | None:
        """The profile an internal event names, following merges; None if it never existed."""
        for _ in range(50):
            nxt = self.merged.get((workspace, profile_id)) or self.redirects.get(
                (workspace, profile_id)
            )
            if nxt is None:
                break
            profile_id = nxt
        if (workspace, profile_id) not in self.profiles:
            self._load_profiles(workspace, [profile_id])
            if (workspace, profile_id) in self.redirects:
                return self.live_profile(workspace, profile_id)
        return self.profiles.get((workspace, profile_id))

    def owner(self, workspace: str, key: Identity) -> str | None:
        if (workspace, key) not in self.owners:
            rows = self.conn.execute(
                "SELECT profile_id FROM identities WHERE workspace_id = ? AND type = ? "
                "AND value = ?",
                (workspace, key.type, key.value),
            )
            self.owners[(workspace, key)] = str(rows[0][0]) if rows else None
            if rows:
                self._load_profiles(workspace, [str(rows[0][0])])
        return self.owners[(workspace, key)]

    def profile(self, workspace: str, profile_id: str) -> Profile:
        if (workspace, profile_id) not in self.profiles:
            self._load_profiles(workspace, [profile_id])
        return self.profiles[(workspace, profile_id)]

    # -- processing ----------------------------------------------------------------------

    def resolve(self, event: Event) -> Profile:
        """Find or create the event's profile, merging and linking as the graph allows."""
        ws = event.workspace_id
        keys = self.identities(event)
        lookup = list(keys)
        if event.previous_id:
            lookup += [
                Identity("user_id", event.previous_id),
                Identity("anonymous_id", event.previous_id),
            ]
        owners: dict[Identity, str] = {}
        for key in lookup:
            found = self.owner(ws, key)
            if found is not None:
                owners[key] = found
        owning = set(owners.values())
        missing = [pid for pid in owning if (ws, pid) not in self.user_ids]
        if missing:
            self._load_user_ids(ws, missing)
        user_ids = {pid: frozenset(self.user_ids.get((ws, pid), set())) for pid in owning}
        resolution = decide.resolve_identities(event, keys, owners, user_ids)
        if resolution.profile_id is None:
            profile_id = resolution.new_profile_id
            self.profiles[(ws, profile_id)] = decide.new_profile(profile_id, event)
            self.created.add((ws, profile_id))
            self.user_ids[(ws, profile_id)] = set()
        else:
            profile_id = resolution.profile_id
        for other, reason in resolution.merge:
            self._merge(ws, profile_id, other, reason, event)
        for other, reason in resolution.refused:
            self.audit.append(
                AuditEntry(
                    ws, "merge_refused", profile_id, other, reason, event.seq, event.timestamp
                )
            )
        for key in resolution.attach:
            self.owners[(ws, key)] = profile_id
            self.new_identities[(ws, key)] = profile_id
            self.new_by_owner.setdefault((ws, profile_id), set()).add(key)
            if key.type == "user_id":
                self.user_ids.setdefault((ws, profile_id), set()).add(key.value)
        self.dirty_profiles.add((ws, profile_id))
        return self.profiles[(ws, profile_id)]

    def _merge(self, ws: str, survivor: str, merged: str, reason: str, event: Event) -> None:
        loser = self.profile(ws, merged)
        self.profiles[(ws, survivor)] = decide.merge_profiles(self.profile(ws, survivor), loser)
        self.merged[(ws, merged)] = survivor
        for (kws, key), owner in list(self.owners.items()):
            if kws == ws and owner == merged:
                self.owners[(kws, key)] = survivor
        moved = self.new_by_owner.pop((ws, merged), set())
        for key in moved:
            self.new_identities[(ws, key)] = survivor
        if moved:
            self.new_by_owner.setdefault((ws, survivor), set()).update(moved)
        self.user_ids.setdefault((ws, survivor), set()).update(
            self.user_ids.get((ws, merged), set())
        )
        self.dirty_profiles.discard((ws, merged))
        self.audit.append(
            AuditEntry(ws, "merge", survivor, merged, reason, event.seq, event.timestamp)
        )

    def record(self, event: Event, profile: Profile, *, changed: bool = True) -> None:
        key = (event.workspace_id, profile.id)
        self.profiles[key] = profile
        if changed:
            self.dirty_profiles.add(key)
        if event.profile_id != profile.id:
            self.event_profiles.append((profile.id, event.seq))

    def group(self, event: Event, profile: Profile) -> None:
        """A group call's account traits, merged in before the later stages see the event, so
        fit rules on account traits score at the group call itself (as a replay does)."""
        if event.type == "group" and event.group_id:
            self._group(event, profile)

    def _group(self, event: Event, profile: Profile) -> None:
        ws, gid = event.workspace_id, event.group_id or ""
        account = self.accounts.get((ws, gid)) or self._load_account(ws, gid)
        traits = decide.account_traits_after(
            account.traits if account else {}, event.account_traits
        )
        first = min(account.first_seen, event.timestamp) if account else event.timestamp
        last = max(account.last_seen, event.timestamp) if account else event.timestamp
        self.accounts[(ws, gid)] = Account(
            id=gid, workspace_id=ws, traits=traits, first_seen=first, last_seen=last
        )
        self.members.add((ws, gid, profile.id))

    def _load_account(self, ws: str, gid: str) -> Account | None:
        self.accounts_read.add((ws, gid))
        rows = self.conn.execute(
            "SELECT traits, first_seen, last_seen FROM accounts WHERE workspace_id = ? AND id = ?",
            (ws, gid),
        )
        if not rows:
            return None
        return Account(
            id=gid,
            workspace_id=ws,
            traits=_dict_decoder.decode(rows[0][0]),
            first_seen=float(rows[0][1]),
            last_seen=float(rows[0][2]),
        )

    def account_traits(self, ws: str, profile: Profile) -> dict[str, Any]:
        """Traits of the profile's most recent account (scoring's fit rules read them)."""
        if not profile.account_ids:
            return {}
        gid = profile.account_ids[-1]
        account = self.accounts.get((ws, gid)) or self._load_account(ws, gid)
        if account is not None:
            self.accounts.setdefault((ws, gid), account)
        return dict(account.traits) if account else {}

    def load_identities(self, ws: str, pids: list[str]) -> None:
        """Read the stored identities of these profiles (loaded by `prefetch`, so `log.overlap`
        already tracks them) in a few queries, for a stage that asks for many of them."""
        wanted = [p for p in pids if (ws, p) not in self.stored_identities]
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            for pid in chunk:
                self.stored_identities[(ws, pid)] = set()
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                "SELECT profile_id, type, value FROM identities WHERE workspace_id = ? "
                f"AND profile_id IN ({marks})",
                (ws, *chunk),
            )
            for pid, kind, value in rows:
                self.stored_identities[(ws, str(pid))].add((str(kind), str(value)))

    def identities_of_profile(self, ws: str, pid: str) -> list[dict[str, str]]:
        """Every identity of the profile, stored or added in this batch."""
        found: set[tuple[str, str]] = set()
        if (ws, pid) not in self.created:  # a profile made in this batch has nothing stored yet
            stored = self.stored_identities.get((ws, pid))
            if stored is None:
                rows = self.conn.execute(
                    "SELECT type, value FROM identities WHERE workspace_id = ? AND profile_id = ?",
                    (ws, pid),
                )
                stored = {(str(t), str(v)) for t, v in rows}
            found = set(stored)
        for key in self.new_by_owner.get((ws, pid), ()):
            if self.new_identities.get((ws, key)) == pid:  # the index never outlives a move
                found.add((key.type, key.value))
        for (kws, merged), survivor in self.merged.items():
            if kws == ws and survivor == pid:
                for t, v in self.conn.execute(
                    "SELECT type, value FROM identities WHERE workspace_id = ? AND profile_id = ?",
                    (ws, merged),
                ):
                    found.add((str(t), str(v)))
        return [{"type": t, "value": v} for t, v in sorted(found)]

    # -- writing (inside the batch transaction) ------------------------------------------

    def flush(self, conn: Conn, now: float) -> None:
        for (ws, merged), survivor in self.merged.items():
            final = survivor
            while (ws, final) in self.merged:
                final = self.merged[(ws, final)]
            if (ws, merged) in self.created:
                # Made and merged in this batch: stored all the same, as merged, so that its id
                # still leads to the survivor and an erasure of the survivor finds what the
                # other stages wrote under it (ledger lines, path rows).
                conn.execute(
                    "INSERT INTO profiles (workspace_id, id, state, merged_into, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (ws, merged, _encoder.encode(self.profiles[(ws, merged)]).decode(), final, now),
                )
            conn.execute(
                "UPDATE profiles SET merged_into = ?, updated_at = ? WHERE workspace_id = ? AND id = ?",
                (final, now, ws, merged),
            )
            conn.execute(
                "UPDATE identities SET profile_id = ? WHERE workspace_id = ? AND profile_id = ?",
                (final, ws, merged),
            )
            conn.execute(
                "UPDATE events SET profile_id = ? WHERE workspace_id = ? AND profile_id = ?",
                (final, ws, merged),
            )
            conn.execute(
                "UPDATE profiles SET merged_into = ? WHERE workspace_id = ? AND merged_into = ?",
                (final, ws, merged),
            )
            for (account,) in conn.execute(
                "SELECT account_id FROM account_members WHERE workspace_id = ? AND profile_id = ?",
                (ws, merged),
            ):
                conn.execute(
                    "INSERT INTO account_members (workspace_id, account_id, profile_id) "
                    "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (ws, account, final),
                )
            conn.execute(
                "DELETE FROM account_members WHERE workspace_id = ? AND profile_id = ?",
                (ws, merged),
            )
        rows = []
        for ws, pid in self.dirty_profiles:
            if (ws, pid) in self.merged:
                continue
            rows.append((ws, pid, _encoder.encode(self.profiles[(ws, pid)]).decode(), now))
        conn.executemany(
            "INSERT INTO profiles (workspace_id, id, state, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (workspace_id, id) DO UPDATE SET state = excluded.state, "
            "updated_at = excluded.updated_at",
            rows,
            bulk=True,
        )
        conn.executemany(
            "INSERT INTO identities (workspace_id, type, value, profile_id, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, type, value) "
            "DO UPDATE SET profile_id = excluded.profile_id",
            [
                (ws, key.type, key.value, self.final(ws, pid), now)
                for (ws, key), pid in self.new_identities.items()
            ],
            bulk=True,
        )
        conn.executemany(
            "INSERT INTO identity_audit (workspace_id, kind, profile_id, other_id, reason, "
            "event_seq, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (a.workspace_id, a.kind, a.profile_id, a.other_id, a.reason, a.event_seq, a.at)
                for a in self.audit
            ],
            bulk=True,
        )
        conn.executemany(
            "UPDATE events SET profile_id = ? WHERE seq = ?",
            [(self._final_any(pid), seq) for pid, seq in self.event_profiles],
            bulk=True,
        )
        conn.executemany(
            "INSERT INTO accounts (workspace_id, id, traits, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, id) DO UPDATE SET "
            "traits = excluded.traits, first_seen = excluded.first_seen, "
            "last_seen = excluded.last_seen",
            [
                (
                    a.workspace_id,
                    a.id,
                    _encoder.encode(a.traits).decode(),
                    a.first_seen,
                    a.last_seen,
                )
                for a in self.accounts.values()
            ],
            bulk=True,
        )
        conn.executemany(
            "INSERT INTO account_members (workspace_id, account_id, profile_id) VALUES (?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [(ws, gid, self.final(ws, pid)) for ws, gid, pid in self.members],
            bulk=True,
        )

    def absorbed_by(self, ws: str, survivor: str) -> list[str]:
        """The profiles this batch merged into `survivor`, directly or through another."""
        return sorted(m for (w, m) in self.merged if w == ws and self.final(ws, m) == survivor)

    def final(self, ws: str, pid: str) -> str:
        """The profile `pid` ends up in after this batch's merges (itself when none)."""
        while (ws, pid) in self.merged:
            pid = self.merged[(ws, pid)]
        return pid

    def _final_any(self, pid: str) -> str:
        for (ws, merged), _ in self.merged.items():
            if merged == pid:
                return self.final(ws, pid)
        return pid
