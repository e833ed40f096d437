"""`POST /hooks/inbound/{workspace}/{source}`: signed webhooks of the playbook's `sources:`.

Bare ASGI in front of the other routes, like the tracking API, whose body limit, error shape
and group-commit writer it shares (`ingest.http`). The workspace is in the path, so a source id
need only be unique within its workspace's playbook and the secret that must have signed the
delivery is known before the body is read.

Answers: 200 `{"accepted", "ignored"}` once the events are committed and the erasures the
delivery asks for (HubSpot privacy deletions) are done; 404 for a source that is not
configured (or disabled: its secret is unset); 401 when the signature is missing, wrong or
stale, 413 over the tracking API's request limit, 400 for a body the tracking API would refuse.
Nothing of a refused delivery is stored or erased. A HubSpot delivery's events and privacy
deletions are committed in one transaction, ordered with the processor as
`DELETE /api/v1/profiles/{id}` is; events of contacts erased earlier are dropped (`ingest.erased`),
and the sender's retry erases nobody twice (the second finds no one).

HubSpot signs the URL it called. Behind a proxy the engine sees another scheme or host (and
maybe a shorter path), so a delivery is checked against the request's own URL and against the
source's `public_url` and `LEADLOOP_PUBLIC_URL` followed by the path and query as received, as
the Twilio hook does with the channels' `public_url`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from leadloop.ingest.http import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    answer,
    commit,
    lowered_headers,
    read_body,
    store,
)
from leadloop.ingest.model import Delivery, Rejected
from leadloop.ingest.sources import read_delivery
from leadloop.playbook.model import InboundSource

if TYPE_CHECKING:
    from leadloop.app import Engine

PREFIX = "/hooks/inbound/"
_encoder = msgspec.json.Encoder()
log = logging.getLogger("leadloop.hooks")


class InboundHooks:
    """Serves `/hooks/inbound/*`; hands every other path to `fallback`."""

    def __init__(self, engine: Engine, fallback: ASGIApp) -> None:
        self.engine = engine
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.fallback(scope, receive, send)
            return
        headers = lowered_headers(scope)
        await answer(send, headers, await self._receive(scope, receive, headers))

    async def _receive(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]
    ) -> bytes | Rejected:
        if scope["method"] != "POST":
            return Rejected("method_not_allowed", "use POST", 405)
        workspace, _, source_id = scope["path"][len(PREFIX) :].partition("/")
        playbook = self.engine.playbooks.get(workspace)
        source = playbook.source(source_id) if playbook is not None else None
        if source is None or not source.enabled:
            # A disabled source answers like a missing one: nothing is accepted without a secret.
            return Rejected("not_found", f"no inbound source {workspace}/{source_id}", 404)
        body = await read_body(receive, headers)
        if isinstance(body, Rejected):
            return msgspec.structs.replace(body, status=413)
        text_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
        delivery = read_delivery(
            source,
            text_headers,
            body,
            self.engine.clock.now(),
            method=scope["method"],
            uris=called_uris(scope, headers, source, self.engine.settings.public_url),
        )
        if isinstance(delivery, Rejected):
            return delivery
        if source.kind == "hubspot":
            return await self._commit(workspace, source_id, delivery)
        dropped = 0
        if delivery.messages:
            stored = await store(self.engine, workspace, delivery.messages)
            if isinstance(stored, Rejected):
                return stored
            dropped = stored
        return _encoder.encode(
            {"accepted": delivery.accepted - dropped, "ignored": delivery.ignored + dropped}
        )

    async def _commit(self, workspace: str, source_id: str, delivery: Delivery) -> bytes | Rejected:
        """A HubSpot delivery: its events (but those of contacts a privacy deletion erased for
        good, counted as ignored) and its privacy deletions, in one transaction."""
        done = await commit(self.engine, workspace, delivery.messages, delivery.erase)
        if isinstance(done, Rejected):
            return done
        # The ids name people: they stay out of the log, as their data does.
        for erased in done.erased:
            log.info(
                "inbound source %s/%s: privacy deletion erased %d profiles",
                workspace,
                source_id,
                erased,
            )
        if done.dropped:
            log.info(
                "inbound source %s/%s: %d events of privacy-deleted contacts dropped",
                workspace,
                source_id,
                done.dropped,
            )
        accepted = done.stored + len(delivery.erase)
        return _encoder.encode({"accepted": accepted, "ignored": delivery.ignored + done.dropped})


def called_uris(
    scope: Scope, headers: dict[bytes, bytes], source: InboundSource, public_url: str | None
) -> list[str]:
    """The URLs the sender may have called: the request's own, then each configured base
    followed by the path (as sent, still percent-encoded) and query."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    tail = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    host = headers.get(b"host", b"").decode("latin-1")
    if not host and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}" if port else str(server_host)
    uris = [f"{scope.get('scheme', 'http')}://{host}{tail}"]
    for base in (source.public_url, (public_url or "").rstrip("/")):
        if base and f"{base}{tail}" not in uris:
            uris.append(f"{base}{tail}")
    return uris
