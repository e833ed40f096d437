"""A bound on request bodies for the admin app: over it, 413 before any route reads a byte
more.

Without it FastAPI read a JSON body of any size into memory (`POST /api/v1/clock/advance`
took 5 MB), and the webhooks read theirs whole before checking the length. The body is read
here, at most `max_bytes` of it, and handed on in one piece.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadloop.ingest.http import declares_more_than

MAX_BODY_BYTES = 1_000_000
"""The largest body any admin-app route takes: a provider's batch of receipts."""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if declares_more_than(dict(scope["headers"]).get(b"content-length"), self.max_bytes):
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:  # no or a false Content-Length
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        body = b'{"code":"too_large","message":"the request body exceeds %d bytes"}' % (
            self.max_bytes
        )
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
