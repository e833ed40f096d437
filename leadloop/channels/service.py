"""The channels' shell: what tracking hits, receipts, bounces and unsubscribes write.

Each function runs inside one write transaction on the writer thread (`Writer.submit`): the
record's transition, the suppression and the engine event commit together. Events go into the
log as `internal` events with deterministic message ids, so a provider re-delivering a receipt,
or a client re-fetching a pixel within the same millisecond, appends nothing twice.

`ChannelServices` holds what the sender and the HTTP routes of one engine share: the tracking
key, the HTTP client, SMTP connection pools and the buffer of tracking hits.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from leadloop.channels import records
from leadloop.channels.config import channels_config
from leadloop.channels.email import SmtpTransport, address_of
from leadloop.channels.model import Inbound, Receipt, referenced
from leadloop.channels.records import Conn, MessageRecord
from leadloop.channels.settings import ChannelsConfig
from leadloop.channels.tracking import is_automated_open
from leadloop.digest import sha256_hex

if TYPE_CHECKING:
    from leadloop.app import Engine

log = logging.getLogger("leadloop.channels")

SECRET_NAME = "tracking"
RECEIPT_STATUS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "opened",
    "failed": "failed",
    "bounced": "bounced",
    "complained": "complained",
}
"""Receipt status → message record status."""


def receipt_event(receipt: Receipt) -> str | None:
    """The engine event a receipt becomes (None: only the record changes)."""
    if receipt.status == "bounced":
        # `Email Bounced` / `Email Complained` are what the journeys stage suppresses on.
        return "Email Bounced" if receipt.channel == "email" else "Message Bounced"
    if receipt.status == "complained":
        return "Email Complained"
    return {
        "delivered": "Message Delivered",
        "read": "Message Read",
        "failed": "Message Failed",
    }.get(receipt.status)


def _event_id(*parts: str) -> str:
    return "channels:" + sha256_hex("\x00".join(parts))[:32]


# --- tracking hits ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str
    """`open` or `click`."""
    workspace: str
    message_id: str
    at: float
    url: str = ""
    user_agent: str = ""


def apply_hits(conn: Conn, hits: Iterable[Hit], now: float) -> int:
    """Opens and clicks → `Email Opened` / `Email Link Clicked` and the record's state."""
    written = 0
    for hit in hits:
        record = records.get(conn, hit.workspace, hit.message_id)
        if record is None:  # a token for a message this database never sent: ignore
            continue
        props = record.properties()
        if hit.kind == "open":
            automated, why = is_automated_open(hit.user_agent, hit.at, record.sent_at)
            props["automated"] = automated
            if automated:
                props["automated_reason"] = why
            name = "Email Opened"
            event_id = _event_id("open", hit.workspace, hit.message_id, f"{hit.at * 1000:.0f}")
            reason = "pixel fetched" + (f" ({why})" if automated else "")
            status = "opened"
        else:
            props["url"] = hit.url
            # The message's first click (its record had not reached `clicked`): a variant's
            # click rate counts messages clicked, not clicks, and the processor reads only the
            # log, so the event itself says which click is the first.
            props["first_click"] = records.advances(record.status, "clicked")
            name = "Email Link Clicked"
            event_id = _event_id(
                "click", hit.workspace, hit.message_id, hit.url, f"{hit.at * 1000:.0f}"
            )
            reason = f"clicked {hit.url}"
            status = "clicked"
        records.emit(conn, hit.workspace, event_id, name, record.profile_id, props, hit.at, now)
        if records.advances(record.status, status):
            records.transition(conn, record, status, reason, hit.at)
        written += 1
    return written


def unsubscribe(
    conn: Conn, workspace: str, message_id: str, source: str, at: float
) -> MessageRecord | None:
    """Suppress the message's address on its channel at once and append `Unsubscribed`."""
    record = records.get(conn, workspace, message_id)
    if record is None or not record.address:
        return None
    reason = "unsubscribed"
    address = record.address
    if record.channel == "email":
        # A record stored before addresses took the identity graph's form holds the trait
        # only lower-cased: the key is the one every send looks up whatever the trait's spelling.
        address = address_of(address)
    records.suppress(conn, workspace, record.channel, address, reason, source, at)
    props = {**record.properties(), "source": source}
    records.emit(
        conn,
        workspace,
        _event_id("unsubscribe", workspace, message_id),
        "Unsubscribed",
        record.profile_id,
        props,
        at,
        at,
    )
    return record


# --- receipts --------------------------------------------------------------------------------


def _find(conn: Conn, workspace: str | None, receipt: Receipt) -> MessageRecord | None:
    if receipt.provider_id:
        if workspace is not None and (found := records.get(conn, workspace, receipt.provider_id)):
            return found
        found = records.by_provider_id(conn, receipt.provider_id, receipt.channel)
        if found is not None and (workspace is None or found.workspace_id == workspace):
            return found
    if (pair := referenced(receipt.reference)) is not None and workspace in (None, pair[0]):
        # A receipt that overtook the provider's answer: the message has no provider id yet.
        found = records.get(conn, *pair)
        if (
            found is not None
            and found.channel == receipt.channel
            and found.provider_id in (None, receipt.provider_id)
        ):
            return found
    if receipt.channel == "email" and receipt.recipient:
        return records.latest_to(conn, workspace, "email", receipt.recipient)
    return None


def apply_receipts(
    conn: Conn, workspace: str | None, receipts: Iterable[Receipt], now: float
) -> int:
    """Delivery, read, failure, bounce and complaint receipts → records, suppressions, events.
    `workspace` is known for email webhooks (a secret that verified names it: the caller
    applies them once per such workspace); Meta and Twilio receipts find their message by the
    provider's id."""
    changed = 0
    for receipt in receipts:
        record = _find(conn, workspace, receipt)
        ws = record.workspace_id if record is not None else workspace
        at = receipt.at if receipt.at is not None else now
        # The address the message went to, when the receipt names the message: a bounce after
        # forwarding names the final recipient, an address we never sent to, while ours keeps
        # bouncing.
        address = (record.address if record is not None else "") or receipt.recipient
        suppresses = receipt.status == "complained" or (
            receipt.status == "bounced" and receipt.permanent
        )
        if suppresses and ws is not None and address and receipt.channel == "email":
            # `address_of` again: a record stored before addresses took the graph's form.
            key = address_of(address)
            records.suppress(
                conn, ws, "email", key, receipt.status, receipt.reason or "provider", at
            )
        if record is None:
            continue
        name = receipt_event(receipt)
        if name is not None:
            props = {**record.properties(), "status": receipt.status}
            if receipt.reason:
                props["reason"] = receipt.reason
            if receipt.status == "bounced":
                props["permanent"] = receipt.permanent
            # A soft bounce has an id of its own: the hard bounce that may follow it for the
            # same message is another event, which the journeys stage suppresses on. A message
            # may soft-bounce more than once (another diagnostic, the receiving server's next
            # try): its diagnostic and the provider's time tell one bounce from another, and a
            # re-delivery of the same bounce has both the same (`at` is the provider's or none:
            # the arrival time would differ each time).
            soft = receipt.status == "bounced" and not receipt.permanent
            kind = (
                ("soft bounce", receipt.reason, "" if receipt.at is None else repr(receipt.at))
                if soft
                else (receipt.status,)
            )
            event_id = _event_id("receipt", record.workspace_id, record.message_id, *kind)
            if not records.emit(
                conn, record.workspace_id, event_id, name, record.profile_id, props, at, now
            ):
                # Its event is in the log already: a provider re-delivering the webhook. The
                # history and the count already have it too.
                continue
        status = RECEIPT_STATUS[receipt.status]
        if receipt.status == "bounced" and not receipt.permanent:
            status = "delivered" if record.status == "sent" else record.status
            reason = f"soft bounce: {receipt.reason}"
            records.transition(conn, record, "deferred", reason, at)
        else:
            reason = receipt.reason or f"{receipt.channel} reported {receipt.status}"
            if name is None and records.in_history(conn, record, status, reason):
                # No event carries this receipt's id (`sent` has none): its history line is
                # what tells a provider's re-delivery (Twilio's time is the arrival's) apart.
                continue
            record = records.transition(conn, record, status, reason, at)
        changed += 1
    return changed


def apply_inbound(conn: Conn, workspace: str, messages: Iterable[Inbound]) -> None:
    for message in messages:
        records.touch_window(conn, workspace, message.channel, message.sender, message.at)


# --- what one engine's sender and routes share --------------------------------------------------


class HitBuffer:
    """Tracking hits are answered at once and written in groups: one writer job takes every
    hit queued while the previous job ran (as ingest does, docs/decisions/0003)."""

    def __init__(self, services: ChannelServices) -> None:
        self._services = services
        self._hits: list[Hit] = []
        self._lock = threading.Lock()
        self._scheduled = False
        self.max_pending = 100_000

    def add(self, hit: Hit) -> bool:
        """False when too many hits wait (the caller still answers; the hit is dropped)."""
        with self._lock:
            if len(self._hits) >= self.max_pending:
                return False
            self._hits.append(hit)
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self._write()
        return True

    def drain(self) -> Future[int]:
        """Write what is queued now (tests and shutdown)."""
        return self._write()

    def _write(self) -> Future[int]:
        taken: list[Hit] = []

        def flush(conn: Conn) -> int:
            with self._lock:
                taken.extend(self._hits)
                self._hits = []
                self._scheduled = False
            return apply_hits(conn, taken, self._services.engine.clock.now()) if taken else 0

        done = self._services.engine.writer.submit(flush)
        done.add_done_callback(lambda _: self._put_back(done, taken))
        return done

    def _put_back(self, done: Future[int], taken: list[Hit]) -> None:
        """Hits of a write that failed wait, first, for the next one: they were answered
        already, and were lost without a word. Their event ids come from the hits, so a
        write that did commit after all stores nothing twice."""
        if not taken or done.cancelled() or done.exception() is None:
            return
        with self._lock:
            kept = taken[: max(0, self.max_pending - len(self._hits))]
            self._hits[:0] = kept
        log.warning(
            "writing %d opens and clicks failed (%s); %d wait for the next write",
            len(taken),
            done.exception(),
            len(kept),
        )


class ChannelServices:
    def __init__(self, engine: Engine, *, http: httpx2.Client | None = None) -> None:
        self.engine = engine
        self.http = http or httpx2.Client(timeout=15.0, follow_redirects=False)
        self.hits = HitBuffer(self)
        self._keys: tuple[bytes, ...] | None = None
        self._smtp: dict[str, SmtpTransport] = {}
        self._lock = threading.Lock()
        self.smtp_connections = 4

    def config(self, workspace: str) -> ChannelsConfig:
        return channels_config(self.engine.playbooks.get(workspace))

    def configs(self) -> dict[str, ChannelsConfig]:
        return {ws: channels_config(pb) for ws, pb in list(self.engine.playbooks.items())}

    def keys(self) -> tuple[bytes, ...]:
        """Tracking keys, the signing one first: `LEADLOOP_SECRET_KEY` (comma-separated for a
        rotation: new first, old after), else a key generated once and kept in the database."""
        if self._keys is None:
            configured = self.engine.settings.extra.get("LEADLOOP_SECRET_KEY", "")
            if configured.strip():
                self._keys = tuple(k.strip().encode() for k in configured.split(",") if k.strip())
            else:
                now = self.engine.clock.now()
                stored = self.engine.writer.submit(
                    lambda c: records.secret(c, SECRET_NAME, now)
                ).result()
                self._keys = (stored.encode(),)
        return self._keys

    def smtp(self, url: str) -> SmtpTransport:
        with self._lock:
            transport = self._smtp.get(url)
            if transport is None:
                transport = SmtpTransport(url, connections=self.smtp_connections)
                self._smtp[url] = transport
            return transport

    def public_url(self, workspace: str) -> str:
        return self.config(workspace).public_url or (self.engine.settings.public_url or "").rstrip(
            "/"
        )

    def close(self) -> None:
        with self._lock:
            transports, self._smtp = list(self._smtp.values()), {}
        for transport in transports:
            try:
                transport.close()
            except Exception:  # shutting down: a broken SMTP session is not worth a crash
                log.debug("closing an SMTP pool failed", exc_info=True)
        self.http.close()


_SERVICES: weakref.WeakKeyDictionary[Any, ChannelServices] = weakref.WeakKeyDictionary()
_SERVICES_LOCK = threading.Lock()


def services(engine: Engine) -> ChannelServices:
    """The engine's one `ChannelServices` (made on first use)."""
    with _SERVICES_LOCK:
        found = _SERVICES.get(engine)
        if found is None:
            found = ChannelServices(engine)
            _SERVICES[engine] = found
        return found
