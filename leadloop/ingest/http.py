"""The Segment-compatible tracking endpoints (`/v1/...`), as plain Starlette routes.

Raw bytes in (no framework body model: browsers send `text/plain`), parsed with msgspec,
handed to the group-commit writer; the 200 is sent only after the commit.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from leadloop.errors import Overloaded, StorageError
from leadloop.ingest import parse
from leadloop.ingest.model import MAX_REQUEST_BYTES, Rejected

if TYPE_CHECKING:
    from leadloop.app import Engine

_ALLOW_HEADERS = "authorization, content-type, content-encoding, x-retry-count"


def _cors(request: Request, response: Response) -> Response:
    origin = request.headers.get("origin")
    response.headers["Access-Control-Allow-Origin"] = origin or "*"
    response.headers["Access-Control-Expose-Headers"] = "Retry-After"
    if origin:
        response.headers["Vary"] = "Origin"
    return response


def _error(request: Request, rejected: Rejected) -> Response:
    return _cors(
        request,
        JSONResponse({"code": rejected.code, "message": rejected.message}, rejected.status),
    )


def _basic_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = decoded.partition(":")[0]
    return user or None


async def _read_body(request: Request) -> bytes | Rejected:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        return Rejected("request_too_large", f"the request exceeds {MAX_REQUEST_BYTES} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return Rejected("request_too_large", f"the request exceeds {MAX_REQUEST_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def tracking_routes(engine: Engine) -> list[Route]:
    async def preflight(request: Request) -> Response:
        response = Response(status_code=204)
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = (
            request.headers.get("access-control-request-headers") or _ALLOW_HEADERS
        )
        response.headers["Access-Control-Max-Age"] = "86400"
        return _cors(request, response)

    async def metrics(request: Request) -> Response:
        if request.method == "OPTIONS":
            return await preflight(request)
        await _read_body(request)
        return _cors(request, JSONResponse({"success": True}))

    async def track(request: Request) -> Response:
        if request.method == "OPTIONS":
            return await preflight(request)
        kind = request.path_params["kind"]
        route_type: str | None
        if kind in ("batch", "b", "import"):
            route_type = None
        elif kind in parse.SHORT_TYPES:
            route_type = parse.SHORT_TYPES[kind]
        elif kind in parse.SINGLE_TYPES:
            route_type = kind
        else:
            return _error(request, Rejected("not_found", f"unknown endpoint /v1/{kind}", 404))
        raw = await _read_body(request)
        if isinstance(raw, Rejected):
            return _error(request, raw)
        body = parse.decompress(raw, request.headers.get("content-encoding"))
        if isinstance(body, Rejected):
            return _error(request, body)
        payload = parse.decode_json(body)
        if isinstance(payload, Rejected):
            return _error(request, payload)
        header_key = _basic_key(request)
        body_key = parse.write_key_of(payload)
        key = header_key or body_key
        if not key:
            return _error(request, Rejected("unauthorized", "a write key is required", 401))
        workspace = await engine.workspace_for_write_key(key)
        if workspace is None or (
            body_key and header_key and body_key != header_key
            and await engine.workspace_for_write_key(body_key) != workspace
        ):
            return _error(request, Rejected("unauthorized", "unknown write key", 401))
        result = parse.parse_request(payload, route_type, received_at=engine.clock.now())
        if isinstance(result, Rejected):
            return _error(request, result)
        try:
            future = engine.writer.append(workspace, result)
        except Overloaded as exc:
            response = _error(request, Rejected("overloaded", str(exc), 429))
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        try:
            await asyncio.wrap_future(future)
        except StorageError:
            response = _error(request, Rejected("unavailable", "storage is unavailable", 503))
            response.headers["Retry-After"] = "5"
            return response
        return _cors(request, JSONResponse({"success": True}))

    return [
        Route("/v1/m", metrics, methods=["POST", "OPTIONS"]),
        Route("/v1/{kind}", track, methods=["POST", "OPTIONS"]),
    ]
