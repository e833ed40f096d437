"""`POST /hooks/inbound/{workspace}/{source}`: signed webhooks of the playbook's `sources:`.

Bare ASGI in front of the other routes, like the tracking API, whose body limit, error shape
and group-commit writer it shares (`ingest.http`). The workspace is in the path, so a source id
need only be unique within its workspace's playbook and the secret that must have signed the
delivery is known before the body is read.

Answers: 200 `{"accepted", "ignored"}` once the events are committed; 404 for a source that is
not configured (or disabled: its secret is unset); 401 when the signature is missing, wrong or
stale, 413 over the tracking API's request limit, 400 for a body the tracking API would refuse.
Nothing of a refused delivery is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from leadloop.ingest.http import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    answer,
    lowered_headers,
    read_body,
    store,
)
from leadloop.ingest.model import Rejected
from leadloop.ingest.sources import read_delivery

if TYPE_CHECKING:
    from leadloop.app import Engine

PREFIX = "/hooks/inbound/"
_encoder = msgspec.json.Encoder()


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
        delivery = read_delivery(source, text_headers, body, self.engine.clock.now())
        if isinstance(delivery, Rejected):
            return delivery
        if delivery.messages:
            failed = await store(self.engine, workspace, delivery.messages)
            if failed is not None:
                return failed
        return _encoder.encode({"accepted": len(delivery.messages), "ignored": delivery.ignored})
