"""Public tracking and receipt endpoints of the channels, and the admin list of a profile's
messages.

No auth on the public routes: every request proves itself.

* `GET /t/o/{token}.gif`, `GET /t/c/{token}`: signed tracking tokens (`channels.tracking`). A
  bad token gets 400 and no redirect; a good one is answered at once and its hit is written in
  a group (`channels.service.HitBuffer`).
* `GET /t/u/{token}` shows a page with one button; `POST /t/u/{token}` (the button, or a mailbox
  provider's RFC 8058 one-click POST) suppresses the address before answering. A GET never
  unsubscribes: link scanners fetch every link of a message.
* `POST /hooks/meta` (`X-Hub-Signature-256`), `GET /hooks/meta` (`hub.challenge` verification),
  `POST /hooks/twilio` (`X-Twilio-Signature`), `POST /hooks/email/{provider}` (Standard
  Webhooks; JSON notices, or a raw DSN / ARF mail as `message/rfc822`): a bad signature gets
  401 and changes nothing.
* `GET /api/v1/profiles/{id}/messages`: bearer admin token, like the rest of `/api/v1`; the
  channel records merged with the sends the journeys' policy deferred or suppressed
  (`channels.records.messages_page`).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from leadloop.api.auth import admin_dependencies, bearer_workspace
from leadloop.api.head import is_head
from leadloop.api.limits import MAX_BODY_BYTES
from leadloop.api.params import Instant, Limit
from leadloop.channels import receipts as receipt_parsing
from leadloop.channels import service
from leadloop.channels.dsn import parse_dsn
from leadloop.channels.model import Receipt
from leadloop.channels.records import messages_page
from leadloop.channels.settings import ChannelsConfig
from leadloop.channels.tracking import verify
from leadloop.identity import queries
from leadloop.ingest.repeated import refuse_repeated, refuse_repeated_params
from leadloop.outbox.signing import verify_webhook

if TYPE_CHECKING:
    from leadloop.app import Engine

PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_STORE = {"cache-control": "no-store, private", "referrer-policy": "no-referrer"}
_json = msgspec.json.Decoder()


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 413: "too_large"}


def _bad(message: str, status: int = 400) -> Response:
    return Response(
        msgspec.json.encode({"code": _CODES[status], "message": message}),
        status,
        media_type="application/json",
    )


async def _body(request: Request) -> bytes | None:
    body = await request.body()
    return None if len(body) > MAX_BODY_BYTES else body


def channels_router(engine: Engine) -> APIRouter:
    svc = service.services(engine)
    router = APIRouter()

    # -- tracking ------------------------------------------------------------------------

    async def pixel(request: Request) -> Response:
        token = verify(svc.keys(), request.path_params["token"], "o")
        if token is None:
            return _bad("unknown tracking token")
        if not is_head(request):  # a HEAD comes from a link checker or a prefetcher
            svc.hits.add(
                service.Hit(
                    "open",
                    token.workspace,
                    token.message_id,
                    engine.clock.now(),
                    user_agent=request.headers.get("user-agent", ""),
                )
            )
        return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)

    async def click(request: Request) -> Response:
        token = verify(svc.keys(), request.path_params["token"], "c")
        if token is None:  # tampered, foreign or truncated: never redirect
            return _bad("this link is not valid")
        if not is_head(request):  # a HEAD comes from a link checker, not a person
            svc.hits.add(
                service.Hit(
                    "click",
                    token.workspace,
                    token.message_id,
                    engine.clock.now(),
                    url=token.url,
                    user_agent=request.headers.get("user-agent", ""),
                )
            )
        return RedirectResponse(token.url, 302, headers=_NO_STORE)

    async def unsubscribe(request: Request) -> Response:
        token = verify(svc.keys(), request.path_params["token"], "u")
        if token is None:
            return _bad("this unsubscribe link is not valid")
        if request.method == "GET":
            action = html.escape(str(request.url.path))
            return HTMLResponse(
                "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
                f'<form method="post" action="{action}">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                "<p>Stop receiving these messages?</p><button>Unsubscribe</button></form>",
                headers=_NO_STORE,
            )
        body = (await request.body())[:10_000]
        one_click = _one_click(request.headers.get("content-type", ""), body)
        source = "one-click" if one_click else "unsubscribe page"
        now = engine.clock.now()
        record = await asyncio.wrap_future(
            engine.writer.submit(
                lambda c: service.unsubscribe(c, token.workspace, token.message_id, source, now)
            )
        )
        if record is None:
            return _bad("this unsubscribe link is not valid")
        return HTMLResponse(
            "<!doctype html><meta charset=utf-8><title>Unsubscribed</title>"
            "<p>You are unsubscribed.</p>",
            headers=_NO_STORE,
        )

    router.add_route("/t/o/{token}.gif", pixel, methods=["GET"], include_in_schema=False)
    router.add_route("/t/c/{token}", click, methods=["GET"], include_in_schema=False)
    router.add_route("/t/u/{token}", unsubscribe, methods=["GET", "POST"], include_in_schema=False)

    # -- provider webhooks ---------------------------------------------------------------

    async def meta_verify(request: Request) -> Response:
        params = request.query_params
        tokens = {c.meta.verify_token for c in svc.configs().values() if c.meta.verify_token}
        if params.get("hub.mode") == "subscribe" and params.get("hub.verify_token") in tokens:
            return PlainTextResponse(params.get("hub.challenge", ""))
        return _bad("verification refused", 403)

    async def meta_hook(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return _bad("body too large", 413)
        header = request.headers.get("x-hub-signature-256")
        configs = svc.configs()
        env = engine.settings.extra.get("LEADLOOP_META_APP_SECRET", "")
        signers: list[str] | None = None  # the operator's own secret: every workspace
        if not receipt_parsing.verify_meta_signature([env], header, body):
            signers = _signed_by(
                configs,
                lambda c: receipt_parsing.verify_meta_signature([c.meta.app_secret], header, body),
            )
            if not signers:
                return _bad("bad or missing X-Hub-Signature-256", 401)
        try:
            payload = _json.decode(body)
        except msgspec.DecodeError:
            return _bad("malformed JSON")
        if repeated := refuse_repeated(body):
            return _bad(repeated.message)
        parsed, messages = receipt_parsing.parse_meta(payload)
        found, inbound = receipt_parsing.storable(parsed), receipt_parsing.storable(messages)
        now = engine.clock.now()
        by_account = _accounts(configs)

        def write(c: Any) -> int:
            for message in inbound:
                ws = by_account.get((message.channel, message.account), "default")
                if signers is None or ws in signers:
                    service.apply_inbound(c, ws, [message])
            return _apply_receipts(c, signers, found, now)

        await asyncio.wrap_future(engine.writer.submit(write))
        return Response(b'{"ok":true}', media_type="application/json")

    async def twilio_hook(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return _bad("body too large", 413)
        params = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        configs = svc.configs()
        query = f"?{request.url.query}" if request.url.query else ""
        urls = [str(request.url)] + [
            f"{c.public_url}{request.url.path}{query}" for c in configs.values() if c.public_url
        ]
        header = request.headers.get("x-twilio-signature")
        signers = _signed_by(
            configs,
            lambda c: receipt_parsing.verify_twilio_signature(
                [c.sms.auth_token], header, urls, params
            ),
        )
        if not signers:
            return _bad("bad or missing X-Twilio-Signature", 401)
        # `ref` names the message: one given twice in the signed URL is as ambiguous.
        query_params = parse_qsl(request.url.query, keep_blank_values=True)
        if repeated := refuse_repeated_params(params) or refuse_repeated_params(
            query_params, "the URL's query"
        ):
            return _bad(repeated.message)
        now = engine.clock.now()
        ref = request.query_params.get("ref", "")
        found = receipt_parsing.storable([receipt_parsing.parse_twilio(dict(params), now, ref)])
        if found:
            await asyncio.wrap_future(
                engine.writer.submit(lambda c: _apply_receipts(c, signers, found, now))
            )
        return Response(b"<Response/>", media_type="application/xml")

    async def email_hook(request: Request) -> Response:
        body = await _body(request)
        if body is None:
            return _bad("body too large", 413)
        now = engine.clock.now()
        headers = dict(request.headers)
        # Every workspace whose secret verifies: two workspaces sending through one provider
        # account share its secret, and a bounce must suppress the address in both.
        signers = _signed_by(
            svc.configs(),
            lambda c: (
                bool(c.email.webhook_secret)
                and verify_webhook(c.email.webhook_secret, headers, body, now).ok
            ),
        )
        if not signers:
            return _bad("bad or missing webhook signature", 401)
        content_type = request.headers.get("content-type", "")
        provider = request.path_params["provider"]
        if provider == "dsn" or content_type.startswith(("message/", "multipart/report")):
            found = parse_dsn(body)
        else:
            try:
                notices = _json.decode(body)
            except msgspec.DecodeError:
                return _bad("malformed JSON")
            if repeated := refuse_repeated(body):
                return _bad(repeated.message)
            found = receipt_parsing.parse_email_webhook(notices)
        found = receipt_parsing.storable(found)
        count = await asyncio.wrap_future(
            engine.writer.submit(lambda c: _apply_receipts(c, signers, found, now))
        )
        return Response(
            msgspec.json.encode({"ok": True, "receipts": len(found), "matched": count}),
            media_type="application/json",
        )

    router.add_route("/hooks/meta", meta_verify, methods=["GET"], include_in_schema=False)
    router.add_route("/hooks/meta", meta_hook, methods=["POST"], include_in_schema=False)
    router.add_route("/hooks/twilio", twilio_hook, methods=["POST"], include_in_schema=False)
    router.add_route(
        "/hooks/email/{provider}", email_hook, methods=["POST"], include_in_schema=False
    )

    # -- admin ---------------------------------------------------------------------------

    workspace = bearer_workspace(engine)

    @router.get(
        "/api/v1/profiles/{profile_id}/messages",
        summary="A profile's messages: channel, template, state and every transition's reason",
        dependencies=admin_dependencies(workspace),
    )
    async def messages(
        profile_id: str,
        # A time, not an id: finite (`inf` listed nothing and said nothing).
        after: Instant = 0,
        limit: Limit = 100,
        ws: str = Depends(workspace),
    ) -> dict[str, Any]:
        def run(c: Any) -> dict[str, Any] | None:
            pid = queries.canonical_id(c, ws, profile_id)
            if pid is None:
                return None
            items = messages_page(c, ws, pid, after, limit)
            nxt = items[-1]["created_at"] if len(items) == limit else None
            return {"profile_id": pid, "messages": items, "next_after": nxt}

        page = await engine.read(run)
        if page is None:
            raise HTTPException(404, detail="no such profile")
        return page

    return router


class TrackingHits:
    """The open pixel and the click redirect as bare ASGI, in front of the other routes.

    They are the hottest public paths (every open and click of every email) and need no
    routing, validation or dependency injection: this answers them directly and hands every
    other request to `fallback`. The same endpoints also exist as routes of
    `channels_router`, for an app that is not wrapped."""

    def __init__(self, engine: Engine, fallback: ASGIApp) -> None:
        self.engine = engine
        self.services = service.services(engine)
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope.get("method") != "GET" or not path.startswith(("/t/o/", "/t/c/")):
            await self.fallback(scope, receive, send)
            return
        agent = ""
        for name, value in scope["headers"]:
            if name == b"user-agent":
                agent = value.decode("latin-1")
        now = self.engine.clock.now()
        if path.startswith("/t/o/") and path.endswith(".gif"):
            token = verify(self.services.keys(), path[5:-4], "o")
            if token is not None:
                self.services.hits.add(
                    service.Hit("open", token.workspace, token.message_id, now, user_agent=agent)
                )
                await _raw(send, 200, _GIF_HEADERS, PIXEL)
                return
        elif path.startswith("/t/c/"):
            token = verify(self.services.keys(), path[5:], "c")
            if token is not None:
                self.services.hits.add(
                    service.Hit("click", token.workspace, token.message_id, now, token.url, agent)
                )
                target = quote(token.url, safe=":/%#?=@[]!$&'()*+,;~")
                location = [(b"location", target.encode("ascii"))]
                await _raw(send, 302, [*_REDIRECT_HEADERS, *location], b"")
                return
        await _raw(send, 400, _JSON_HEADERS, _BAD_TOKEN)


_NO_STORE_RAW = [(b"cache-control", b"no-store, private"), (b"referrer-policy", b"no-referrer")]
_GIF_HEADERS = [(b"content-type", b"image/gif"), *_NO_STORE_RAW]
_REDIRECT_HEADERS = [(b"content-length", b"0"), *_NO_STORE_RAW]
_JSON_HEADERS = [(b"content-type", b"application/json")]
_BAD_TOKEN = b'{"code":"bad_request","message":"this link is not valid"}'


async def _raw(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_form_parser = email.parser.BytesParser(policy=email.policy.default)


def _one_click(content_type: str, body: bytes) -> bool:
    """Whether a POST carries RFC 8058's `List-Unsubscribe=One-Click`: form-urlencoded, or
    multipart/form-data as in the RFC's own example (section 8)."""
    if not content_type.lower().startswith("multipart/form-data"):
        return dict(parse_qsl(body.decode("latin-1"))).get("List-Unsubscribe") == "One-Click"
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    for part in _form_parser.parsebytes(head + body).walk():
        name = part.get_param("name", header="content-disposition")
        value = part.get_payload(decode=True)
        if name == "List-Unsubscribe" and isinstance(value, bytes):
            return value.strip() == b"One-Click"
    return False


def _signed_by(
    configs: dict[str, ChannelsConfig], signed: Callable[[ChannelsConfig], bool]
) -> list[str]:
    """The workspaces whose own secret signed a delivery. Its receipts and inbound messages
    change only those: with any workspace's secret accepted for all, one workspace's Meta app
    secret or Twilio token could mark another's messages read or open its service windows."""
    return [ws for ws, config in configs.items() if signed(config)]


def _apply_receipts(
    conn: Any, signers: list[str] | None, receipts: list[Receipt], now: float
) -> int:
    """`signers` None: any workspace (the delivery was signed with the operator's secret)."""
    if signers is None:
        return service.apply_receipts(conn, None, receipts, now)
    return sum(service.apply_receipts(conn, ws, receipts, now) for ws in signers)


def _accounts(configs: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(channel, our account id) → workspace, to file inbound messages."""
    out: dict[tuple[str, str], str] = {}
    for ws, config in configs.items():
        if config.whatsapp.phone_number_id:
            out[("whatsapp", config.whatsapp.phone_number_id)] = ws
        if config.instagram.account_id and config.instagram.account_id != "me":
            out[("instagram", config.instagram.account_id)] = ws
    return out
