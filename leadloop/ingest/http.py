"""The Segment-compatible tracking endpoints (`/v1/...`) as a bare ASGI app.

This is the hot path, so it skips the framework: raw bytes in (browsers send
`text/plain`, so no body model), msgspec to parse, the group-commit writer to store, and
the 200 only after the commit. Everything else is served by the admin app.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from leadloop.errors import Overloaded, StorageError
from leadloop.ingest import parse
from leadloop.ingest.erased import Committed, may_name_erased
from leadloop.ingest.model import MAX_REQUEST_BYTES, Accepted, Rejected

if TYPE_CHECKING:
    from leadloop.app import Engine

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BATCH_KINDS = ("batch", "b", "import")
METRICS_KIND = "m"
"""The browser client's own metrics: accepted and discarded."""


def tracking_paths() -> tuple[str, ...]:
    """Every path `TrackingApp` answers, each to POST (and OPTIONS, the CORS preflight): the
    reference (`docs/api.md`) is checked against these."""
    kinds = (*sorted(parse.SINGLE_TYPES), *parse.SHORT_TYPES, *BATCH_KINDS, METRICS_KIND)
    return tuple(f"/v1/{kind}" for kind in kinds)


_ALLOW_HEADERS = b"authorization, content-type, content-encoding, x-retry-count"
_OK = b'{"success":true}'
_encoder = msgspec.json.Encoder()
log = logging.getLogger("leadloop.ingest")


def lowered_headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope["headers"]}


def _basic_key(header: bytes | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


class TrackingApp:
    """Serves `/v1/*`; hands every other path to `fallback` (the admin app)."""

    def __init__(self, engine: Engine, fallback: ASGIApp) -> None:
        self.engine = engine
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.fallback(scope, receive, send)
            return
        headers = lowered_headers(scope)
        method = scope["method"]
        if method == "OPTIONS":
            await respond(send, headers, 204, b"", self._preflight(headers))
            return
        if method != "POST":
            await reject(send, headers, Rejected("method_not_allowed", "use POST", 405))
            return
        kind = scope["path"][4:]
        if kind == METRICS_KIND:
            await read_body(receive, headers)  # client-side metrics: accepted, discarded
            await respond(send, headers, 200, _OK)
            return
        if kind in BATCH_KINDS:
            route_type: str | None = None
        elif kind in parse.SHORT_TYPES:
            route_type = parse.SHORT_TYPES[kind]
        elif kind in parse.SINGLE_TYPES:
            route_type = kind
        else:
            await reject(send, headers, Rejected("not_found", f"no endpoint /v1/{kind}", 404))
            return
        outcome = await self._ingest(receive, headers, route_type)
        await answer(send, headers, outcome or _OK)

    async def _ingest(
        self, receive: Receive, headers: dict[bytes, bytes], route_type: str | None
    ) -> Rejected | None:
        raw = await read_body(receive, headers)
        if isinstance(raw, Rejected):
            return raw
        encoding = headers.get(b"content-encoding")
        body = parse.decompress(raw, encoding.decode("latin-1") if encoding else None)
        if isinstance(body, Rejected):
            return body
        payload = parse.decode_json(body)
        if isinstance(payload, Rejected):
            return payload
        header_key = _basic_key(headers.get(b"authorization"))
        body_key = parse.write_key_of(payload)
        key = header_key or body_key
        if not key:
            return Rejected("unauthorized", "a write key is required", 401)
        engine = self.engine
        workspace = await engine.workspace_for_write_key(key)
        if workspace is None:
            return Rejected("unauthorized", "unknown write key", 401)
        foreign = await self._foreign_key(payload, route_type, key, workspace)
        if foreign is not None:
            return foreign
        result = parse.parse_request(payload, route_type, received_at=engine.clock.now())
        if isinstance(result, Rejected):
            return result
        stored = await store(engine, workspace, result)
        return stored if isinstance(stored, Rejected) else None

    async def _foreign_key(
        self, payload: dict[str, Any], route_type: str | None, key: str, workspace: str
    ) -> Rejected | None:
        """A write key of the request besides `key` (the body's beside the header's, a batch
        message's own: the browser puts it in each) that names no workspace or another: the
        messages would be stored in `key`'s."""
        named = [("", parse.write_key_of(payload))]
        batch = payload.get("batch") if route_type is None else None
        if isinstance(batch, list):
            named += [
                (f"batch[{i}].", parse.write_key_of(m))
                for i, m in enumerate(batch)
                if isinstance(m, dict)
            ]
        checked = {key}
        for where, other in named:
            if other is None or other in checked:
                continue
            if await self.engine.workspace_for_write_key(other) != workspace:
                what = f"{where}writeKey and the request's" if where else "the two write keys"
                return Rejected("unauthorized", f"{what} name different workspaces", 401)
            checked.add(other)
        return None

    @staticmethod
    def _preflight(headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (
                b"access-control-allow-headers",
                headers.get(b"access-control-request-headers") or _ALLOW_HEADERS,
            ),
            (b"access-control-max-age", b"86400"),
        ]


def declares_more_than(declared: bytes | None, limit: int) -> bool:
    """Whether a Content-Length declares more than `limit` bytes. `bytes.isdigit` is ASCII
    only; anything else is no length, and the body is counted as it arrives. Its length is
    compared first: `int` raises past 4,300 digits (a 500 for a hostile header)."""
    if not declared or not declared.isdigit():
        return False
    digits = declared.lstrip(b"0")
    return len(digits) > len(str(limit)) or int(digits or b"0") > limit


async def read_body(receive: Receive, headers: dict[bytes, bytes]) -> bytes | Rejected:
    too_large = Rejected("request_too_large", f"the request exceeds {MAX_REQUEST_BYTES} bytes")
    if declares_more_than(headers.get(b"content-length"), MAX_REQUEST_BYTES):
        return too_large
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def store(engine: Engine, workspace: str, messages: list[Accepted]) -> Rejected | int:
    """Append to the log through the group-commit writer; once the commit is done, how many
    messages were dropped for naming a contact erased for good. Messages of a HubSpot id are
    committed as a HubSpot delivery is, where that is checked (`ingest.erased`)."""
    if may_name_erased(messages):
        done = await commit(engine, workspace, messages, ())
        if isinstance(done, Rejected):
            return done
        if done.dropped:
            log.info(
                "workspace %s: %d events of privacy-deleted contacts dropped",
                workspace,
                done.dropped,
            )
        return done.dropped
    try:
        future = engine.writer.append(workspace, messages)
    except Overloaded as exc:
        return Rejected("overloaded", str(exc), 429)
    try:
        await asyncio.wrap_future(future)
    except StorageError:
        return Rejected("unavailable", "storage is unavailable; retry later", 503)
    return 0


async def commit(
    engine: Engine, workspace: str, messages: Sequence[Accepted], erase: Sequence[str]
) -> Committed | Rejected:
    """`Engine.commit_delivery`, refused with 429 where an append would be."""
    try:
        future = engine.commit_delivery(workspace, messages, erase)
    except Overloaded as exc:
        return Rejected("overloaded", str(exc), 429)
    try:
        return await asyncio.wrap_future(future)
    except StorageError:
        return Rejected("unavailable", "storage is unavailable; retry later", 503)


async def answer(send: Send, headers: dict[bytes, bytes], outcome: Rejected | bytes) -> None:
    """200 with a JSON body, or the rejection."""
    if isinstance(outcome, Rejected):
        await reject(send, headers, outcome)
    else:
        await respond(send, headers, 200, outcome)


async def reject(
    send: Send,
    headers: dict[bytes, bytes],
    rejected: Rejected,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """`{"code", "message"}` with the rejection's status (and Retry-After for 429 and 503)."""
    body = _encoder.encode({"code": rejected.code, "message": rejected.message})
    if rejected.status in (429, 503):
        extra = [*(extra or []), (b"retry-after", str(_retry_after(rejected)).encode())]
    await respond(send, headers, rejected.status, body, extra)


async def respond(
    send: Send,
    headers: dict[bytes, bytes],
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    origin = headers.get(b"origin")
    out = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"access-control-allow-origin", origin or b"*"),
        (b"access-control-expose-headers", b"Retry-After"),
    ]
    if origin:
        out.append((b"vary", b"Origin"))
    if status == 204:
        out = out[2:]
    if extra:
        out.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


def _retry_after(rejected: Rejected) -> int:
    return 1 if rejected.status == 429 else 5
