"""`MessageSender`: delivers the outbox's `message` rows on their channel.

A row's payload (written by the journeys stage) names the `channel` (email, whatsapp, instagram,
sms, audience), the `template` (or the `audience` and its `action`), a stable `message_id`, the
`profile_id`, `journey`, `step` and `instance`. For each claimed group of rows:

1. one read: the profiles (traits, identities, accounts), scores, suppressions, service
   windows and any existing record (a re-send after a crash finds its record `sent` and stops);
2. per row, pure steps: the address, the suppression check, the template rendered in the
   sandbox, the provider request;
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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from leadloop.channels import audiences, instagram, records, sms, whatsapp
from leadloop.channels import email as email_channel
from leadloop.channels.model import Failed, SendResult, Sent, TryLater
from leadloop.channels.ratelimit import Limiter
from leadloop.channels.records import Conn, MessageRecord
from leadloop.channels.service import ChannelServices, services
from leadloop.channels.settings import ChannelsConfig
from leadloop.channels.tracking import Kind, Token, is_trackable_url, sign
from leadloop.identity import queries as identity_queries
from leadloop.identity.normalize import normalize_phone
from leadloop.outbox.decide import next_attempt
from leadloop.outbox.model import RetryPolicy
from leadloop.outbox.service import Claimed, Outcome
from leadloop.personalization.templates import (
    MessageTemplate,
    TemplateIssue,
    render_email,
    render_message,
    render_template,
)
from leadloop.scoring import queries as score_queries

if TYPE_CHECKING:
    from leadloop.app import Engine

log = logging.getLogger("leadloop.channels")
KIND = "message"


@dataclass
class _Row:
    index: int
    item: Claimed
    workspace: str
    message_id: str
    channel: str
    template: str
    profile_id: str | None
    journey: str | None
    step: str | None
    payload: dict[str, Any]
    view: dict[str, Any] | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    account: dict[str, Any] = field(default_factory=dict)
    existing: MessageRecord | None = None
    suppressed: str | None = None
    last_inbound: float | None = None
    address: str = ""
    final: tuple[str, str] | None = None
    """(record status, reason) when the row ends before any send."""
    request: Callable[[], SendResult] | None = None
    email: Any = None
    throttled: tuple[float, str] | None = None
    """(when its rate-limit token frees, why): the row waits, nothing is sent now."""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


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

    @classmethod
    def for_engine(cls, engine: Engine) -> MessageSender:
        return cls(services(engine))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.services.close()

    # -- the batch ------------------------------------------------------------------------

    def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]:
        rows: list[_Row] = []
        outcomes: list[Outcome | None] = [None] * len(items)
        for index, item in enumerate(items):
            p = item.payload
            channel = _text(p.get("channel"))
            message_id = _text(p.get("message_id")) or item.idempotency_key
            if channel is None:
                outcomes[index] = Outcome("dead", None, "payload has no channel")
                continue
            rows.append(
                _Row(
                    index=index,
                    item=item,
                    workspace=item.workspace_id,
                    message_id=message_id,
                    channel=channel,
                    template=_text(p.get("template")) or _text(p.get("audience")) or "",
                    profile_id=_text(p.get("profile_id")) or item.profile_id,
                    journey=_text(p.get("journey")),
                    step=_text(p.get("step")),
                    payload=p,
                )
            )
        if rows:
            self.engine.read_sync(lambda c: self._load(c, rows))
            for row in rows:
                if row.existing is None or row.existing.status in records.RESENDABLE:
                    self._prepare(row, now)
            created = self.engine.writer.submit(lambda c: self._queue(c, rows, now)).result()
            results = self._deliver([r for r in rows if r.final is None and r.request is not None])
            self.engine.writer.submit(lambda c: self._finish(c, rows, results, now)).result()
            for row in rows:
                outcomes[row.index] = self._outcome(row, created.get(row.index), results, now)
        done = [o for o in outcomes if o is not None]
        assert len(done) == len(items)
        return done

    # 1. reads

    def _load(self, conn: Conn, rows: list[_Row]) -> None:
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
                row.suppressed = records.suppression(conn, row.workspace, row.channel, row.address)
                if row.channel in ("whatsapp", "instagram"):
                    row.last_inbound = records.last_inbound(
                        conn, row.workspace, row.channel, row.address
                    )

    def _address(self, row: _Row) -> str:
        assert row.view is not None
        traits = row.view.get("traits") or {}
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        if row.channel == "email":
            raw = _text(traits.get("email")) or _text(identities.get("email")) or ""
            address = email_channel.address_of(raw)
            return address if email_channel.valid_address(address) else ""
        if row.channel in ("sms", "whatsapp"):
            phone = traits.get("phone") or identities.get("phone")
            return normalize_phone(phone, self.engine.settings.default_region) or ""
        if row.channel == "instagram":
            return str(traits.get("instagram_psid") or traits.get("instagram_id") or "")
        if row.channel == "audience":
            return _text(row.payload.get("audience")) or ""
        return ""

    # 2. pure steps per row

    def _context(self, row: _Row, config: ChannelsConfig, unsubscribe_url: str) -> dict[str, Any]:
        assert row.view is not None
        traits = row.view.get("traits") or {}
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        return {
            "profile": {
                "id": row.profile_id,
                "traits": traits,
                "identities": identities,
                "first_seen": row.view.get("first_seen"),
                "last_seen": row.view.get("last_seen"),
            },
            "traits": traits,
            "scores": row.scores,
            "account": row.account,
            "event": row.payload.get("properties") or {},
            "message": {
                "id": row.message_id,
                "journey": row.journey,
                "step": row.step,
                "channel": row.channel,
                "template": row.template,
            },
            "unsubscribe_url": unsubscribe_url,
        }

    def _prepare(self, row: _Row, now: float) -> None:
        config = self.services.config(row.workspace)
        if row.view is None:
            row.final = ("failed", f"profile {row.profile_id!r} not found")
            return
        if row.channel == "audience":
            self._prepare_audience(row, config, now)
            return
        if row.channel in config.disabled:
            row.final = (
                "skipped",
                f"channel {row.channel} is disabled: {config.disabled[row.channel]}",
            )
            return
        if not row.address:
            row.final = ("skipped", f"the profile has no {row.channel} address")
            return
        if row.suppressed is not None:
            row.final = ("suppressed", f"{row.channel} address is suppressed: {row.suppressed}")
            return
        if row.channel == "email":
            self._prepare_email(row, config)
        elif row.channel in ("whatsapp", "instagram", "sms"):
            self._prepare_message(row, config, now)
        else:
            row.final = ("failed", f"unknown channel {row.channel!r}")

    def _track_url(self, row: _Row, base: str, kind: Kind, url: str = "") -> str:
        token = sign(self.services.keys()[0], Token(kind, row.workspace, row.message_id, url))
        if kind == "o":
            return f"{base}/t/o/{token}.gif"
        return f"{base}/t/{kind}/{token}"

    def _prepare_email(self, row: _Row, config: ChannelsConfig) -> None:
        template = config.email_templates.get(row.template)
        if template is None:
            row.final = ("failed", f"no email template {row.template!r} in the channels section")
            return
        base = config.public_url
        unsubscribe_url = self._track_url(row, base, "u")
        rendered = render_email(template, self._context(row, config, unsubscribe_url))
        if isinstance(rendered, TemplateIssue):
            row.final = ("failed", f"template {row.template!r}: {_issue(rendered)}")
            return
        markup = rendered.html
        if markup:
            if config.email.track_clicks:

                def track(url: str) -> str | None:
                    if not is_trackable_url(url) or url.startswith(f"{base}/t/"):
                        return None
                    return self._track_url(row, base, "c", url)

                markup = email_channel.rewrite_links(markup, track)
            pixel = self._track_url(row, base, "o") if config.email.track_opens else None
            markup = email_channel.decorate_html(markup, rendered.preheader, pixel)
        envelope = email_channel.Envelope(
            sender=config.email.sender,
            to=row.address,
            message_id=row.message_id,
            message_id_header=email_channel.message_id_header(
                row.workspace, row.message_id, config.email.sender
            ),
            unsubscribe_url=unsubscribe_url,
            reply_to=config.email.reply_to,
        )
        outgoing = email_channel.compose(rendered, envelope, markup, self.engine.clock.now())
        row.email = (config.email.smtp_url, outgoing)
        row.request = lambda: Failed("email is sent in groups")  # placeholder: see _deliver

    def _render(self, row: _Row, source: str, context: dict[str, Any]) -> str | None:
        result = render_template(source, context)
        if isinstance(result, TemplateIssue):
            row.final = ("failed", f"template {row.template!r}: {_issue(result)}")
            return None
        return result.text.strip()

    def _prepare_message(self, row: _Row, config: ChannelsConfig, now: float) -> None:
        spec = config.messages.get((row.channel, row.template))
        if spec is None:
            row.final = ("failed", f"no {row.channel} template {row.template!r}")
            return
        tag: str | None = None
        if row.channel == "instagram":
            refusal, tag = instagram.window_refusal(
                row.last_inbound, now, config.instagram.message_tag
            )
            if refusal:
                row.final = ("failed", refusal)
                return
        context = self._context(row, config, "")
        text = ""
        if spec.text:
            rendered = render_message(MessageTemplate(row.channel, spec.text), context)
            if isinstance(rendered, TemplateIssue):
                row.final = ("failed", f"template {row.template!r}: {_issue(rendered)}")
                return
            text = rendered.text
        link = caption = ""
        if spec.media is not None:
            link = self._render(row, spec.media.link, context) or ""
            caption = (
                self._render(row, spec.media.caption, context) or "" if spec.media.caption else ""
            )
            if row.final is not None:
                return
            if not is_trackable_url(link):
                row.final = ("failed", f"media link {link!r} is not an http(s) URL")
                return
        http = self.services.http
        address = row.address
        if row.channel == "whatsapp":
            settings = config.whatsapp
            open_window = whatsapp.in_service_window(row.last_inbound, now)
            if open_window and (text or spec.media is not None):
                body = whatsapp.free_form(address, text, spec.media, link, caption)
            elif spec.template is not None:
                params = [self._render(row, p, context) or "" for p in spec.template.params]
                if row.final is not None:
                    return
                body = whatsapp.template_message(
                    address, spec.template.name, spec.template.language, params
                )
            else:
                row.final = (
                    "failed",
                    "outside the 24-hour WhatsApp service window and the template has no "
                    "approved `template:` to send instead",
                )
                return
            row.request = lambda: whatsapp.send(http, settings, body, now)
            self._throttle(row, settings.phone_number_id, settings.rate_limit, now)
        elif row.channel == "instagram":
            ig = config.instagram
            parts = instagram.payloads(address, text, spec.media, link, tag)

            def send_parts() -> SendResult:
                result: SendResult = Failed("nothing to send")
                for part in parts:
                    result = instagram.send(http, ig, part, now)
                    if not isinstance(result, Sent):
                        return result
                return result

            row.request = send_parts
            self._throttle(row, ig.account_id, ig.rate_limit, now, len(parts))
        else:
            settings_sms = config.sms
            callback = (
                f"{config.public_url}/hooks/twilio"
                if config.public_url and settings_sms.status_callback
                else ""
            )
            fields = sms.form(settings_sms, address, text, link, callback)
            row.request = lambda: sms.send(http, settings_sms, fields, now)
            self._throttle(row, settings_sms.sender, settings_sms.rate_limit, now)

    def _throttle(self, row: _Row, sender: str, rate: float, now: float, count: int = 1) -> None:
        """Take the send's token(s), or hold the row until they free."""
        key = (row.workspace, row.channel, sender)
        due = self.limiter.acquire(key, rate, f"{row.workspace}\x00{row.message_id}", now, count)
        if due is not None:
            row.request = None
            row.throttled = (
                due,
                f"rate limit: {row.channel} sender {sender} allows {rate:g} messages/s; "
                f"next token in {due - now:.3f}s",
            )

    def _prepare_audience(self, row: _Row, config: ChannelsConfig, now: float) -> None:
        audience_id = _text(row.payload.get("audience")) or ""
        action = row.payload.get("action", "add")
        settings = config.audience(audience_id)
        if settings is None:
            row.final = ("failed", f"no audience {audience_id!r} in the channels section")
            return
        if settings.disabled_reason:
            row.final = (
                "skipped",
                f"audience {audience_id} is disabled: {settings.disabled_reason}",
            )
            return
        assert row.view is not None
        traits = row.view.get("traits") or {}
        add = action != "remove"
        if add and traits.get(settings.consent_trait) is not True:
            row.final = ("skipped", f"no advertising consent (trait {settings.consent_trait})")
            return
        identities = {i["type"]: i["value"] for i in row.view.get("identities", [])}
        email = _text(traits.get("email")) or _text(identities.get("email"))
        phone = _text(traits.get("phone")) or _text(identities.get("phone"))
        http = self.services.http
        row.request = lambda: audiences.send(http, settings, add, email, phone, now)

    # 3. the queued records

    def _queue(self, conn: Conn, rows: list[_Row], now: float) -> dict[int, MessageRecord]:
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

    def _deliver(self, rows: list[_Row]) -> dict[int, SendResult]:
        results: dict[int, SendResult] = {}
        by_server: dict[str, list[_Row]] = {}
        others: list[_Row] = []
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
        self, conn: Conn, rows: list[_Row], results: dict[int, SendResult], now: float
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
        self, row: _Row, record: MessageRecord | None, results: dict[int, SendResult], now: float
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
        due = next_attempt(attempt, now, result.after, row.item.idempotency_key, self._policy)
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


def _issue(issue: TemplateIssue) -> str:
    where = f" (line {issue.line})" if issue.line else ""
    part = f"{issue.part}: " if issue.part else ""
    return f"{part}{issue.message}{where}"
