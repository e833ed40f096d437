"""The conversions stage's shell: runs after scoring in the processor's batch.

For every event it (1) folds the event's click ids, browser ids, IP, user agent and consent
signal into the profile's match keys (`conversion_keys`), and (2) for every mapping the event or
one of its stage moves matches, builds one `Conversion` per destination and either enqueues it
(an outbox row of kind `conversion`, key `{destination}:{event_id}`) or records why not
(`conversion_log`, status `skipped`; for a destination that is disabled, a count per destination
and reason in `conversion_skips`). Both happen in the batch transaction, so a replayed
batch enqueues nothing twice, and an id once enqueued is never enqueued again, even long after
the platforms' 48-hour dedup windows (capi.md §6.2).

The outbox payload is hashed per platform before it is written (`identifiers`): raw email, phone
and names never reach a row that leaves the profile store (DESIGN.md, "Raw PII never leaves").
What a mapping reads from the event is `fields`; the stage's own tables are `store`.
`for_destination` and `user_identifiers` stay importable from here: bench/ uses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from leadloop.conversions import store
from leadloop.conversions.capture import MatchKeys, capture_keys, merge_keys
from leadloop.conversions.config import ConversionsConfig, Mapping
from leadloop.conversions.fields import (
    WITHDRAWN,
    advertising_consent,
    auto_source,
    bounded_id,
    contents_of,
    currency_of,
    event_id_for,
    limited_data_use,
    order_id_in,
    safe_order_id,
    states_denial,
    text_at,
    value_of,
)
from leadloop.conversions.identifiers import for_destination, user_identifiers
from leadloop.conversions.model import Conversion
from leadloop.conversions.payloads import build_event, check_conversion, held_until
from leadloop.conversions.store import LogRow
from leadloop.identity.model import Profile
from leadloop.log.batch import Batch, Conn, OutboxRow
from leadloop.log.model import Event
from leadloop.scoring.match import condition_holds, page_url
from leadloop.scoring.service import stage_moves

log = logging.getLogger("leadloop.conversions")
KIND = "conversion"
_NO_COVERAGE = (False, False, False, False)
"""Match-key coverage recorded for a skipped conversion (not hashed, never counted)."""


@dataclass
class _Cache:
    keys: dict[tuple[str, str], MatchKeys] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    log: list[LogRow] = field(default_factory=list)
    disabled: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    """Conversions mapped to a disabled destination, per (workspace, destination, why it is
    disabled); the recorded reason is written out once per batch (`flush`), not per event."""
    absorbed: set[tuple[str, str]] = field(default_factory=set)
    """Merged profiles whose keys a survivor has taken (`ConversionStage._absorb`)."""
    withdrawn: set[tuple[str, str]] = field(default_factory=set)
    """Profiles whose consent an event of this batch withdrew (`ConversionStage._withdraw`)."""


def _cache(batch: Batch) -> _Cache:
    cache = batch.extra.get("conversions")
    if cache is None:
        cache = _Cache()
        batch.extra["conversions"] = cache
    assert isinstance(cache, _Cache)
    return cache


class ConversionStage:
    name = "conversions"

    def __init__(self, config: Callable[[str], ConversionsConfig]) -> None:
        """`config(workspace)` is the parsed `conversions` section of the applied playbook."""
        self._config = config

    # -- processor protocol ----------------------------------------------------------------

    def prefetch(self, batch: Batch, events: list[Event]) -> None:
        cache = _cache(batch)
        by_workspace: dict[str, list[str]] = {}
        for ws, pid in batch.identity.profiles:
            if self._config(ws).mappings:
                by_workspace.setdefault(ws, []).append(pid)
        for ws, ids in by_workspace.items():
            for pid, keys in store.load_keys(batch.identity.conn, ws, ids).items():
                cache.keys[(ws, pid)] = keys
        # Each conversion sends its profile's identifiers: read those of the profiles whose
        # events a mapping forwards at once (most events are not conversions). Stage moves are
        # only known while the batch is decided; those profiles are read one at a time.
        converting: dict[str, set[str]] = {}
        names: dict[str, frozenset[str]] = {}
        for event in events:
            if event.type != "track":
                continue
            ws = event.workspace_id
            if ws not in names:
                names[ws] = self._config(ws).track_names
            if event.event not in names[ws]:
                continue
            for key in batch.identity.identities(event):
                owner = batch.identity.owners.get((ws, key))
                if owner is not None:
                    converting.setdefault(ws, set()).add(owner)
                    break
        for ws, owners in converting.items():
            batch.identity.load_identities(ws, sorted(owners))

    def handle(self, batch: Batch, event: Event, profile: Profile) -> Profile:
        config = self._config(event.workspace_id)
        if not config.mappings:
            return profile
        cache = _cache(batch)
        ident = (event.workspace_id, profile.id)
        keys = cache.keys.get(ident)
        if keys is None:
            created = ident in batch.identity.created
            keys = store.NO_KEYS if created else store.load_one_keys(batch.identity.conn, ident)
        if event.type != "internal":
            updated = capture_keys(
                keys, event.body, event.timestamp, consent_paths=config.consent.context
            )
            if updated is not keys:
                keys = updated
                cache.dirty.add(ident)
        if batch.identity.merged and profile.id in batch.identity.merged.values():
            merged = self._absorb(batch, cache, event.workspace_id, profile.id, keys)
            if merged is not keys:
                keys = merged
                cache.dirty.add(ident)
        cache.keys[ident] = keys
        if (
            event.type != "internal"
            and states_denial(config, event)
            and advertising_consent(config, profile, keys)[0] is False
        ):
            self._withdraw(batch, cache, event.workspace_id, profile.id)
        for mapping in config.mappings:
            if mapping.track:
                if (
                    event.type == "track"
                    and event.event in mapping.track
                    and all(condition_holds(event, c) for c in mapping.where)
                ):
                    self._forward(batch, config, mapping, event, profile, keys, None)
                continue
            for move in stage_moves(batch, event):
                if move.profile_id != profile.id:
                    continue
                if mapping.model is not None and move.model != mapping.model:
                    continue
                if (
                    mapping.stage is not None
                    and move.to_stage.casefold() == mapping.stage.casefold()
                ):
                    stage_key = f"{move.model}_{move.to_stage}"
                    self._forward(
                        batch, config, mapping, event, profile, keys, (stage_key, move.at)
                    )
        return profile

    @staticmethod
    def _absorb(batch: Batch, cache: _Cache, ws: str, pid: str, keys: MatchKeys) -> MatchKeys:
        """`keys` with those of the profiles merged into `pid` in this batch and not yet taken:
        a web visitor's click ids and cookies must reach the conversions of the CRM contact
        it turns out to be (their row is dropped at `flush`)."""
        for other in batch.identity.absorbed_by(ws, pid):
            if (ws, other) in cache.absorbed:
                continue
            cache.absorbed.add((ws, other))
            theirs = cache.keys.get((ws, other))
            if theirs is None:
                created = (ws, other) in batch.identity.created
                theirs = (
                    store.NO_KEYS
                    if created
                    else store.load_one_keys(batch.identity.conn, (ws, other))
                )
            keys = merge_keys(keys, theirs)
        return keys

    @staticmethod
    def _withdraw(batch: Batch, cache: _Cache, ws: str, pid: str) -> None:
        """Nothing queued for `pid` before consent was withdrawn is sent: this batch's own rows
        are not written (their log lines say why), and the outbox's are skipped at `flush`."""
        cache.withdrawn.add((ws, pid))
        ids = {pid, *batch.identity.absorbed_by(ws, pid)}
        dropped: set[str] = set()
        kept = []
        for row in batch.outbox:
            if row.kind == KIND and row.workspace_id == ws and row.profile_id in ids:
                dropped.add(row.idempotency_key)
            else:
                kept.append(row)
        if not dropped:
            return
        batch.outbox[:] = kept
        for i, entry in enumerate(cache.log):
            key = f"{entry.destination}:{entry.event_id}"
            if entry.workspace_id == ws and entry.status == "queued" and key in dropped:
                cache.log[i] = replace(entry, status="skipped", reason=WITHDRAWN)

    def flush(self, batch: Batch, conn: Conn) -> None:
        cache = batch.extra.get("conversions")
        if not isinstance(cache, _Cache):
            return
        if cache.withdrawn:
            final = sorted({(ws, batch.identity.final(ws, pid)) for ws, pid in cache.withdrawn})
            store.skip_unsent(conn, final, KIND, WITHDRAWN, batch.now)
        merged = batch.identity.merged
        conn.executemany(
            "DELETE FROM conversion_keys WHERE workspace_id = ? AND profile_id = ?", list(merged)
        )
        store.save_keys(
            conn,
            (
                (ws, pid, cache.keys[(ws, pid)])
                for ws, pid in sorted(cache.dirty)
                if (ws, pid) not in merged
            ),
            batch.now,
        )
        store.append_log(conn, cache.log, batch.now)
        skips = {
            (ws, dest_id, f"destination {dest_id} is disabled: {why}"): n
            for (ws, dest_id, why), n in cache.disabled.items()
        }
        store.count_skips(conn, skips, batch.now)

    # -- internals ------------------------------------------------------------------------

    def _forward(
        self,
        batch: Batch,
        config: ConversionsConfig,
        mapping: Mapping,
        event: Event,
        profile: Profile,
        keys: MatchKeys,
        stage: tuple[str, float] | None,
    ) -> None:
        ws = event.workspace_id
        body = event.body
        order_id = safe_order_id(
            text_at(body, mapping.order_id) if mapping.order_id else order_id_in(body)
        )
        if stage is not None:
            stage_key, at = stage
            event_id = event_id_for("leadloop", profile.id, stage_key)
        else:
            at = event.timestamp
            explicit = text_at(body, mapping.event_id) if mapping.event_id else None
            if explicit:
                event_id = bounded_id(explicit)
            elif order_id:
                event_id = event_id_for("order", order_id, mapping.event_name)
            else:
                event_id = event_id_for("event", event.message_id, mapping.id)
        # Google's consent fields carry the signal as it is: unset without one (capi.md §6.4).
        consent, why_not = advertising_consent(config, profile, keys)
        identities = batch.identity.identities_of_profile(ws, profile.id)
        user = user_identifiers(profile, identities, keys, mapping.identifiers)
        url = page_url(event)
        source = mapping.action_source or auto_source(stage is not None, user, url)
        ldu = limited_data_use(config, profile)
        base = Conversion(
            event_name=mapping.event_name,
            event_time=at,
            event_id=event_id,
            user=user,
            action_source=source,
            value=value_of(body, mapping),
            currency=currency_of(body, mapping),
            contents=contents_of(body, mapping.contents),
            order_id=order_id,
            event_source_url=url if source == "website" else None,
            ad_user_data=consent,
            ad_personalization=consent,
            # capi.md §1.4: Meta discards a CRM stage event dated before the lead's creation. The
            # profile's first event is a lower bound of that, so the check never drops a good one.
            lead_created_at=profile.first_seen
            if stage is not None and profile.first_seen
            else None,
            ldu=ldu,
        )
        dests = (
            [config.destination(target) for target in mapping.destinations]
            if mapping.destinations
            else config.destinations
        )
        cache = _cache(batch)
        for dest in dests:
            if dest is None:
                continue
            # Hashed only when it can be sent: coverage counts queued rows alone (`queries`), and
            # a playbook with unconfigured destinations would otherwise hash for each of them.
            if dest.destination is None:
                # A fact of the playbook, not of this event: counted, not logged per event.
                skip = (ws, dest.id, dest.disabled_reason)
                cache.disabled[skip] = cache.disabled.get(skip, 0) + 1
                continue
            reason: str | None
            flags = _NO_COVERAGE
            event_name = mapping.name_for(dest.platform)
            if why_not:
                reason = why_not
            else:
                # A phone without `+` is read in the engine-wide region last (`user_identifiers`).
                region = config.default_region or batch.identity.default_region
                conversion, flags = for_destination(base, dest, mapping, region)
                reason = check_conversion(conversion, dest.destination, batch.now)
            cache.log.append(
                LogRow(
                    ws,
                    profile.id,
                    dest.id,
                    event_id,
                    event_name,
                    mapping.id,
                    "skipped" if reason else "queued",
                    reason,
                    *flags,
                    at,
                )
            )
            if reason:
                continue
            batch.outbox.append(
                OutboxRow(
                    workspace_id=ws,
                    kind=KIND,
                    destination=dest.id,
                    idempotency_key=f"{dest.id}:{event_id}",
                    # The event in its platform's form, hashed and built now: the sender only
                    # wraps stored events into requests, and the row shows what will be sent.
                    # Destination settings that shape an event (region, LDU, lead source) are
                    # those of the moment it happened; request-level ones are read when sent.
                    payload={
                        "mapping": mapping.id,
                        "platform": dest.platform,
                        "event_time": conversion.event_time,
                        "action_source": conversion.action_source,
                        # What `check_conversion` held the event time against (§1.4).
                        "lead_created_at": conversion.lead_created_at,
                        "event": build_event(conversion, dest.destination),
                    },
                    profile_id=profile.id,
                    # An event Meta would refuse as from the future waits until it is due.
                    not_before=held_until(at, dest.destination, batch.now) or batch.now,
                )
            )
