"""The limit to compare against: a bare Starlette + msgspec endpoint that parses a
Segment body and answers 200, with no authentication and no storage."""

from __future__ import annotations

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_decoder = msgspec.json.Decoder()
_ok = b'{"success":true}'


async def endpoint(request: Request) -> Response:
    payload = _decoder.decode(await request.body())
    if not isinstance(payload, dict):
        return Response(b'{"code":"invalid_json"}', 400, media_type="application/json")
    return Response(_ok, media_type="application/json")


app = Starlette(routes=[Route("/v1/{kind}", endpoint, methods=["POST"])])
