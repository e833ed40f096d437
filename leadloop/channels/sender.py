"""`MessageSender`: delivers the outbox's `message` rows on their channel.

A row's payload (written by the journeys stage) names the `channel` (email, whatsapp, instagram,
sms, audience), the `template` (or the `audience` and its `action`), a stable `message_id`, the
`profile_id`, `journey`, `step` and `instance`. For each claimed group of rows:

1. one read: the profiles (traits, identities, accounts), scores, suppressions, service
   windows and any existing record (a re-send after a crash finds its record `sent` and stops);
2. per row, pure steps (`channels.prepare`): the suppression check, the template rendered in
   the sandbox, the provider request;
3. one write: the records, `queued` (or `suppressed` / `skipped` / `failed` with the reason);
4. the sends: emails over pooled SMTP sessions, the HTTP channels on a few threads;
5. one write: each record's transition (`sent` with the provider's id, `failed` with the
   provider's reason, or a retry noted), and `Message Failed` events.

Before a WhatsApp, Instagram or SMS request goes, the sender takes a token from the bucket of
its (workspace, channel, sender) (`channels.ratelimit`); without one the row goes back as
`pending`, due when its reserved token frees: nothing sleeps.

Outbox outcomes: `delivered` (handed to the provider), `pending` (429/5xx/network: retried with
backoff, Retry-After as a floor; or waiting for a rate-limit token), `dead` (refused for good,
with the reason), `skipped` (suppressed, channel disabled, no address: final, never re-driven).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from leadloop.channels import email as email_channel
from leadloop.channels import records
from leadloop.channels.model import Failed, SendResult, Sent, TryLater
from leadloop.channels.prepare import MessageRow, RowPreparer, text_of
from leadloop.channels.ratelimit import Limiter
from leadloop.channels.records import Conn, MessageRecord
from leadloop.channels.service import ChannelServices, services
from leadloop.identity import queries as identity_queries
from leadloop.identity.normalize import normalize_phone
from leadloop.outbox.decide import next_attempt
from leadloop.outbox.model import RetryPolicy
from leadloop.outbox.service import Claimed, Outcome
from leadloop.scoring import queries as score_queries

if TYPE_CHECKING:
    from leadloop.app import Engine

log = logging.getLogger("leadloop.channels")
KIND = "message"


class MessageSender:
    """The dispatcher's sender for kind `message` (a `BatchSender`)."""

    def __init__(
        self,
        channel_services: ChannelServices,
        *,
        policy: RetryPolicy | None = None,
        parallel: int = 8,
    ) -> None:
        self.services = channel_services
        self.engine = channel_services.engine
        self._policy = policy or RetryPolicy()
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="leadloop-msg")
        self.limiter = Limiter()
        self._preparer = RowPreparer(self.services, self.limiter)

    @classmethod
    def for_engine(cls, engine: Engine) -> MessageSender:
        return cls(services(engine))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.services.close()

    # -- the batch ------------------------------------------------------------------------

    def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]:
        rows: list[MessageRow] = []
        outcomes: list[Outcome | None] = [None] * len(items)
        for index, item in enumerate(items):
            p = item.payload
            channel = text_of(p.get("channel"))
            message_id = text_of(p.get("message_id")) or item.idempotency_key
            if channel is None:
                outcomes[index] = Outcome("dead", None, "payload has no channel")
                continue
            rows.append(
                MessageRow(
                    index=index,
                    item=item,
                    workspace=item.workspace_id,
                    message_id=message_id,
                    channel=channel,
                    template=text_of(p.get("template")) or text_of(p.get("audience")) or "",
                    profile_id=text_of(p.get("profile_id")) or item.profile_id,
                    journey=text_of(p.get("journey")),
                    step=text_of(p.get("step")),
                    payload=p,
                )
            )
        if rows:
            self.engine.read_sync(lambda c: self._load(c, rows))
            for row in rows:
                if row.existing is None or row.existing.status in records.RESENDABLE:
                    self._preparer.prepare(row, now)
            created = self.engine.writer.submit(lambda c: self._queue(c, rows, now)).result()
            results = self._deliver([r for r in rows if r.final is None and r.request is not None])
            self.engine.writer.submit(lambda c: self._finish(c, rows, results, now)).result()
            for row in rows:
                outcomes[row.index] = self._outcome(row, created.get(row.index), results, now)
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(items)
        return done

    # 1. reads

    def _load(self, conn: Conn, rows: list[MessageRow]) -> None:
        views: dict[tuple[str, str], dict[str, Any] | None] = {}
        for row in rows:
            row.existing = records.get(conn, row.workspace, row.message_id)
            if row.profile_id is None:
                continue
            key = (row.workspace, row.profile_id)
            if key not in views:
                views[key] = identity_queries.profile_view(conn, row.workspace, row.profile_id)
            row.view = views[key]
            if row.view is None:
                continue
            row.profile_id = str(row.view["id"])
            row.scores = score_queries.scores_view(
                conn, row.workspace, row.profile_id, self.engine.clock.now()
            )
            accounts = row.view.get("accounts") or []
            if accounts:
                account = identity_queries.account_view(conn, row.workspace, str(accounts[0]))
                row.account = dict(account.get("traits", {})) if account else {}
            row.address = self._address(row)
            if row.address and row.channel != "audience":
                keys = [row.address]
                if row.channel == "email":
                    keys.append(email_channel.former_key_of(self._raw_email(row)))
                row.suppressed = records.suppression(conn, row.workspace, row.channel, *keys)
                if row.channel in ("whatsapp", "instagram"):
                    row.last_inbound = records.last_inbound(
                        conn, row.workspace, row.channel, row.address
                    )

    def _address(self, row: MessageRow) -> str:
        assert row.view is not None
        traits = row.view.get("traits") or {}
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        if row.channel == "email":
            address = email_channel.address_of(self._raw_email(row))
            return address if email_channel.valid_address(address) else ""
        if row.channel in ("sms", "whatsapp"):
            phone = traits.get("phone") or identities.get("phone")
            return normalize_phone(phone, self.engine.settings.default_region) or ""
        if row.channel == "instagram":
            return str(traits.get("instagram_psid") or traits.get("instagram_id") or "")
        if row.channel == "audience":
            return text_of(row.payload.get("audience")) or ""
        return ""

    @staticmethod
    def _raw_email(row: MessageRow) -> str:
        """The email trait first, else the identity's, as it is stored."""
        assert row.view is not None
        traits = row.view.get("traits") or {}
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        return text_of(traits.get("email")) or text_of(identities.get("email")) or ""

    # 3. the queued records

    def _queue(self, conn: Conn, rows: list[MessageRow], now: float) -> dict[int, MessageRecord]:
        created: dict[int, MessageRecord] = {}
        for row in rows:
            status, reason = row.final or ("queued", "queued for sending")
            record = MessageRecord(
                workspace_id=row.workspace,
                message_id=row.message_id,
                profile_id=row.profile_id,
                channel=row.channel,
                template=row.template or None,
                journey=row.journey,
                step=row.step,
                address=row.address or None,
                provider_id=None,
                status=status,
                reason=reason,
                sent_at=None,
                created_at=now,
                updated_at=now,
            )
            if row.existing is None:
                created[row.index] = records.create(conn, record, now)
                continue
            current = row.existing
            if current.status in records.RESENDABLE and current.status != "queued":
                current = records.transition(conn, current, "queued", "sending again", now)
            if row.final is not None:
                current = records.transition(conn, current, status, reason, now)
            created[row.index] = current
        return created

    # 4. sends

    def _deliver(self, rows: list[MessageRow]) -> dict[int, SendResult]:
        results: dict[int, SendResult] = {}
        by_server: dict[str, list[MessageRow]] = {}
        others: list[MessageRow] = []
        for row in rows:
            if row.email is not None:
                by_server.setdefault(row.email[0], []).append(row)
            else:
                others.append(row)
        futures = {row.index: self._pool.submit(_call, row.request) for row in others}
        for url, group in by_server.items():
            sent = self.services.smtp(url).send_many([r.email[1] for r in group])
            results.update({r.index: res for r, res in zip(group, sent, strict=True)})
        results.update({index: future.result() for index, future in futures.items()})
        return results

    # 5. transitions

    def _finish(
        self, conn: Conn, rows: list[MessageRow], results: dict[int, SendResult], now: float
    ) -> None:
        for row in rows:
            result = results.get(row.index)
            if result is None:
                continue
            record = records.get(conn, row.workspace, row.message_id)
            if record is None:
                continue
            if isinstance(result, Sent):
                records.transition(
                    conn,
                    record,
                    "sent",
                    f"accepted by {row.channel}",
                    now,
                    provider_id=result.provider_id or None,
                )
            elif isinstance(result, Failed):
                records.transition(conn, record, "failed", result.reason, now)
                records.emit(
                    conn,
                    row.workspace,
                    f"channels:failed:{row.workspace}:{row.message_id}",
                    "Message Failed",
                    row.profile_id,
                    {**record.properties(), "reason": result.reason},
                    now,
                    now,
                )
            else:
                attempt = row.item.attempts + 1
                records.transition(
                    conn, record, "queued", f"attempt {attempt}: {result.reason}", now
                )

    def _outcome(
        self,
        row: MessageRow,
        record: MessageRecord | None,
        results: dict[int, SendResult],
        now: float,
    ) -> Outcome:
        result = results.get(row.index)
        if result is None and row.throttled is not None:
            return Outcome("pending", row.throttled[0], row.throttled[1], attempted=False)
        if result is None:
            if row.final is not None:
                status, reason = row.final
                return Outcome("dead" if status == "failed" else "skipped", None, reason)
            current = record or row.existing
            # Already sent before a crash (the record says so): done, not sent again.
            return Outcome("delivered", None, current.reason if current else None)
        if isinstance(result, Sent):
            return Outcome("delivered")
        if isinstance(result, Failed):
            return Outcome("dead", None, result.reason)
        assert isinstance(result, TryLater)
        attempt = row.item.attempts + 1
        # The wait counts from the attempt's end: one slower than the first backoffs was
        # otherwise due again the moment it ended.
        ended = max(now, self.engine.clock.now())
        due = next_attempt(attempt, ended, result.after, row.item.idempotency_key, self._policy)
        if due is None:
            return Outcome("dead", None, f"{result.reason}; gave up after {attempt} attempts")
        return Outcome("pending", due, result.reason)


def _call(request: Callable[[], SendResult] | None) -> SendResult:
    assert request is not None
    try:
        return request()
    except Exception as exc:  # a bug in a channel must not lose the batch's other rows
        log.exception("channel send failed")
        return TryLater(f"internal error: {exc!r}")
