"""`HEAD` answered as `GET` is, without the body, on every route of the admin app.

Starlette adds HEAD to its own routes, but FastAPI's routes take only the methods they declare:
`/api/v1/*` answered HEAD 405 (before the token check) where `/healthz` answered 200. And a
Starlette route taking GET and POST that tells them apart by `request.method` ran its POST branch
for HEAD: a HEAD of an unsubscribe link (`/t/u/{token}`) unsubscribed. Here HEAD runs the GET,
auth included, and only the body is dropped; the OpenAPI document lists no HEAD operations.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEAD_KEY = "leadloop.head"
"""Set in the scope a route sees when the request was a HEAD answered as GET."""


def is_head(request: Request) -> bool:
    """Whether this GET is a HEAD underneath: a route whose GET records something (an open, a
    click) leaves that out, since a HEAD comes from link checkers and prefetchers, not people."""
    return bool(request.scope.get(HEAD_KEY, False))


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server's own scope still says HEAD, so it frames the answer as one
        # (GET's Content-Length kept, no body bytes expected).
        await self.app({**scope, "method": "GET", HEAD_KEY: True}, receive, without_body)
