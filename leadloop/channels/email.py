"""Email over SMTP: the MIME message (pure) and a pooled aiosmtplib transport.

Each message carries a text and an HTML part; in the HTML, the preheader (HTML-escaped, hidden),
links rewritten to signed click redirects, and a signed open pixel. `List-Unsubscribe` names the
signed unsubscribe URL, and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` tells mailbox
providers they may POST to it (RFC 8058), which unsubscribes at once without a page.

`Message-ID` is derived from the workspace and message id, so a re-send after a crash carries the
same id, and DSN bounces (which quote the original headers) find the message again.

Transport: `LEADLOOP_SMTP_URL` is `smtp://user:pass@host:587` (STARTTLS when the server offers it;
`?starttls=require` refuses to send in clear, `?starttls=off` never upgrades) or
`smtps://user:pass@host:465` (TLS from the first byte). Certificates are verified against the
system's CAs, or, with `?ca_file=/path/ca.pem`, against that bundle only (a private or test CA:
the system's CAs are then not trusted for this server). Connections are opened once and reused
across messages by a small pool on one background event loop, the only asyncio code of the
channel senders: the dispatcher calls senders from worker threads (docs/decisions/0001).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import html
import re
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.utils import formataddr, formatdate, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import idna

from leadloop.channels.model import Failed, SendResult, Sent, TryLater
from leadloop.identity.normalize import normalize_email
from leadloop.personalization.templates import RenderedEmail

# --- the message ---------------------------------------------------------------------------

# The start tag of a hyperlink (HTML's are <a> and <area>), to its `>`: a quoted attribute value
# may hold `>`. The three alternatives begin with different characters, so nothing backtracks.
_LINK_TAG = re.compile(
    r"""<(?:a|area)(?=[\t\n\f\r />])(?:"[^"]*"|'[^']*'|[^"'>])*>""", re.IGNORECASE
)
# One attribute of a start tag, as HTML tokenizes it: a name (so `data-href` is a name of its
# own, never `href`), then optionally `=` and a value in " or ', or unquoted up to a space or `>`.
_ATTRIBUTE = re.compile(
    r"""([^\t\n\f\r />"'=][^\t\n\f\r />=]*)"""
    r"""(?:([\t\n\f\r ]*=[\t\n\f\r ]*)("[^"]*"|'[^']*'|[^\t\n\f\r >]*))?"""
)
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
PREHEADER_STYLE = "display:none;max-height:0;overflow:hidden;mso-hide:all"


def rewrite_links(markup: str, track: Callable[[str], str | None]) -> str:
    """Every `<a href>` and `<area href>` whose target `track` accepts points at the tracking
    URL it returns. `track` gets the URL a browser follows: entities decoded (`&amp;` is `&`)."""

    def tag(found: re.Match[str]) -> str:
        text = found.group(0)
        # From 1: the tag's own name is read as an attribute named `a` or `area`, never `href`.
        for attribute in _ATTRIBUTE.finditer(text, 1):
            if attribute.group(1).lower() != "href":
                continue
            # A browser follows the first `href` and ignores any later one.
            value = attribute.group(3)
            if value is None:
                return text
            quote = value[0] if value[:1] in ('"', "'") else ""
            target = html.unescape(value[len(quote) : len(value) - len(quote)]).strip()
            tracked = track(target)
            if tracked is None:
                return text
            wrap = quote or '"'
            start, end = attribute.span(3)
            return f"{text[:start]}{wrap}{html.escape(tracked)}{wrap}{text[end:]}"
        return text

    return _LINK_TAG.sub(tag, markup)


def decorate_html(markup: str, preheader: str, pixel_url: str | None) -> str:
    """Insert the hidden preheader after `<body>` and the pixel before `</body>`."""
    if preheader:
        hidden = f'<div style="{PREHEADER_STYLE}">{html.escape(preheader)}</div>'
        opened = _BODY_OPEN.search(markup)
        if opened:
            markup = markup[: opened.end()] + hidden + markup[opened.end() :]
        else:
            markup = hidden + markup
    if pixel_url:
        img = (
            f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">'
        )
        closings = list(_BODY_CLOSE.finditer(markup))
        if closings:
            closing = closings[-1]
            markup = markup[: closing.start()] + img + markup[closing.start() :]
        else:
            markup = markup + img
    return markup


# `Name <address>`: everything before the last `<` is the name, as people write a sender (and
# a CRM stores a contact's email). parseaddr reads RFC 5322's address list, where an unquoted
# comma ends a mailbox: "Acme, Inc. <news@acme.test>" was the address "Acme".
_NAMED = re.compile(r"(.*)<([^<>]*)>\s*", re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def split_mailbox(value: str) -> tuple[str, str]:
    """(display name, address) of `Name <address>`, `"Name" <address>` or a bare address."""
    named = _NAMED.fullmatch(value.strip())
    if named is None:
        return parseaddr(value)
    name = named.group(1).strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = _QUOTED_PAIR.sub(r"\1", name[1:-1])
    return name, named.group(2).strip()


def ascii_domain(address: str) -> str:
    """The address with its domain in ASCII (IDNA 2008 A-labels, `xn--…`), the form every SMTP
    server and RFC 5322 header takes: the identity graph keeps domains in Unicode
    (`anna@bücher.example`), and without SMTPUTF8 aiosmtplib cannot even write one in
    `RCPT TO`. A domain IDNA refuses is returned as it is (`SmtpTransport` fails that send)."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except UnicodeError:  # idna.IDNAError and the codecs' errors alike
        return address


def message_id_header(workspace: str, message_id: str, sender: str) -> str:
    digest = hashlib.sha256(f"{workspace}\x00{message_id}".encode()).hexdigest()[:32]
    domain = ascii_domain(split_mailbox(sender)[1]).rpartition("@")[2] or "leadloop.invalid"
    return f"<{digest}@{domain}>"


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    """`Name <address>` or an address: the workspace's identity."""
    to: str
    message_id: str
    message_id_header: str
    unsubscribe_url: str = ""
    reply_to: str = ""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message as it goes on the wire: envelope sender, recipients and the bytes."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    message_id_header: str


# CR/LF would inject headers; the other C0 and C1 controls, DEL and the Unicode line and
# paragraph separators are no text a reader should see, and NUL breaks some SMTP servers.
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _needs_encoding(text: str) -> bool:
    # Text that looks like an encoded word is one too: sent bare, readers decode it.
    return not text.isascii() or "=?" in text


def _encoded_words(text: str, name: str) -> str:
    """RFC 2047 words of at most 75 characters (section 2), folded with CRLF SPACE: one word
    per header was hundreds of characters long for a long subject or sender name."""
    return Header(text, "utf-8", header_name=name).encode(maxlinelen=76, linesep="\r\n")


def _plain(value: str) -> str:
    return _HEADER_UNSAFE.sub(" ", value).strip()


def _header(value: str, name: str = "") -> str:
    """One header's value: control characters are spaces; RFC 2047 for non-ASCII text."""
    value = _plain(value)
    return _encoded_words(value, name) if _needs_encoding(value) else value


def _mailbox(value: str, header: str) -> str:
    name, address = split_mailbox(_plain(value))
    address = ascii_domain(address)
    if not name:
        return address
    if _needs_encoding(name):
        return f"{_encoded_words(name, header)} <{address}>"
    return formataddr((name, address))


def _qp(text: str) -> bytes:
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(normalized, istext=True).replace(b"\n", b"\r\n")


def compose(rendered: RenderedEmail, envelope: Envelope, html_body: str, now: float) -> Outgoing:
    """The MIME bytes: multipart/alternative of a text and (when present) an HTML part, both
    quoted-printable UTF-8. Written directly rather than through `email.message`, which costs
    about 1 ms a message (ten times rendering) and folds long headers at 78 columns into
    encoded words that mail clients do not decode back into a `List-Unsubscribe` URL."""
    headers = [
        f"From: {_mailbox(envelope.sender, 'From')}",
        f"To: {_mailbox(envelope.to, 'To')}",
        f"Subject: {_header(rendered.subject, 'Subject')}",
        f"Date: {formatdate(now, usegmt=True)}",
        f"Message-ID: {envelope.message_id_header}",
        f"X-Leadloop-Message-Id: {_header(envelope.message_id)}",
        "MIME-Version: 1.0",
    ]
    if envelope.reply_to:
        headers.append(f"Reply-To: {_mailbox(envelope.reply_to, 'Reply-To')}")
    if envelope.unsubscribe_url:
        # A URL, never encoded words: a reader would not decode them back into it.
        headers.append(f"List-Unsubscribe: <{_plain(envelope.unsubscribe_url)}>")
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    text = rendered.text or _text_from_html(rendered.html)
    part = 'charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    if not html_body:
        data = "\r\n".join([*headers, f"Content-Type: text/plain; {part}"]).encode() + _qp(text)
    else:
        # "=_" never occurs in quoted-printable text, so the boundary cannot collide.
        boundary = "=_ll_" + envelope.message_id_header.strip("<>").partition("@")[0]
        head = "\r\n".join(
            [*headers, f'Content-Type: multipart/alternative; boundary="{boundary}"', "", ""]
        )
        data = b"".join(
            [
                head.encode(),
                f"--{boundary}\r\nContent-Type: text/plain; {part}".encode(),
                _qp(text),
                f"\r\n--{boundary}\r\nContent-Type: text/html; {part}".encode(),
                _qp(html_body),
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
    sender = ascii_domain(split_mailbox(envelope.sender)[1])
    recipient = ascii_domain(split_mailbox(envelope.to)[1])
    return Outgoing(sender, (recipient,), data, envelope.message_id_header)


_TAGS = re.compile(r"<[^>]+>")


def _text_from_html(markup: str) -> str:
    return html.unescape(_TAGS.sub("", markup)).strip() + "\n"


def address_of(value: str) -> str:
    """The bare address of `Name <a@b>` in the identity graph's form (`normalize_email`), the
    key of the suppression list and of the message records: a person unsubscribed or bounced
    under `xn--bcher-kva.example.` is the one mailed as `bücher.example` (NFC or NFD). An
    address the graph refuses is only lower-cased (`valid_address` judges it)."""
    address = split_mailbox(value)[1].strip()
    return normalize_email(address) or address.lower()


def former_key_of(value: str) -> str:
    """The key `address_of` gave before it took the identity graph's form (only lower-cased):
    the suppressions written then are still honoured, with no migration rewriting them."""
    return split_mailbox(value)[1].strip().lower()


def valid_address(value: str) -> bool:
    try:
        Address(addr_spec=value)
    except (ValueError, IndexError):
        return False
    return "@" in value


# --- the transport -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool | None
    """None: when the server offers it; True: required; False: never."""
    validate_certs: bool = True
    timeout: float = 30.0
    ca_file: str = ""
    """A PEM bundle: the only CAs trusted for this server (`?ca_file=`)."""

    def tls_context(self) -> ssl.SSLContext | None:
        """The client context when `ca_file` is set: that bundle only, certificate and hostname
        always checked (`verify=false` does not apply to it). None: aiosmtplib's default."""
        if not self.ca_file:
            return None
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)


def parse_smtp_url(url: str) -> SmtpTarget:
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("expected smtp://[user:pass@]host[:port] or smtps://…")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    starttls: bool | None = {"require": True, "required": True, "off": False, "none": False}.get(
        query.get("starttls", "auto")
    )
    return SmtpTarget(
        hostname=parts.hostname,
        port=parts.port or (465 if implicit else 587),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=implicit,
        starttls=False if implicit else starttls,
        validate_certs=query.get("verify", "true").lower() not in ("false", "0", "no"),
        timeout=float(query.get("timeout", "30")),
        ca_file=query.get("ca_file", ""),
    )


class SmtpTransport:
    """A pool of up to `connections` SMTP sessions, each reused for many messages."""

    def __init__(self, url: str, *, connections: int = 4) -> None:
        self.target = parse_smtp_url(url)
        self._tls = self.target.tls_context()
        self._size = connections
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="leadloop-smtp", daemon=True
        )
        self._thread.start()
        self._idle: asyncio.Queue[aiosmtplib.SMTP] | None = None
        self._opened = 0
        self.connects = 0
        """Connections opened so far (the benchmark and tests check reuse with it)."""

    def send_many(self, messages: list[Outgoing]) -> list[SendResult]:
        future: Future[list[SendResult]] = asyncio.run_coroutine_threadsafe(
            self._send_all(messages), self._loop
        )
        return future.result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _send_all(self, messages: list[Outgoing]) -> list[SendResult]:
        return list(await asyncio.gather(*(self._send_one(m) for m in messages)))

    async def _client(self) -> aiosmtplib.SMTP:
        if self._idle is None:
            self._idle = asyncio.Queue()
        if self._idle.empty() and self._opened < self._size:
            self._opened += 1
            try:
                return await self._connect()
            except BaseException:
                self._opened -= 1
                raise
        return await self._idle.get()

    async def _connect(self) -> aiosmtplib.SMTP:
        t = self.target
        client = aiosmtplib.SMTP(
            hostname=t.hostname,
            port=t.port,
            username=t.username,
            password=t.password,
            use_tls=t.implicit_tls,
            start_tls=t.starttls,
            validate_certs=t.validate_certs,
            timeout=t.timeout,
            tls_context=self._tls,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()  # a failed handshake must not leave the socket open
            raise
        self.connects += 1
        return client

    def _release(self, client: aiosmtplib.SMTP | None) -> None:
        assert self._idle is not None
        if client is None or not client.is_connected:
            self._opened -= 1
            return
        self._idle.put_nowait(client)

    async def _send_one(self, message: Outgoing) -> SendResult:
        if not (message.sender.isascii() and all(r.isascii() for r in message.recipients)):
            # No ASCII form (a domain IDNA refuses; a non-ASCII mailbox name, which only
            # SMTPUTF8 carries and we do not ask for): aiosmtplib raised UnicodeEncodeError
            # mid-transaction, failing every message of the batch on every retry.
            return Failed("an address has no ASCII form for SMTP (a domain IDNA refuses)")
        for attempt in (1, 2):
            client: aiosmtplib.SMTP | None = None
            try:
                client = await self._client()
                response = (
                    await client.sendmail(message.sender, list(message.recipients), message.data)
                )[1]
                self._release(client)
                return Sent(provider_id=message.message_id_header, note=response[:200])
            except aiosmtplib.SMTPServerDisconnected as exc:
                # A pooled session the server closed while idle: one fresh connection.
                await _quietly_close(client)
                self._release(None)
                if attempt == 2:
                    return TryLater(f"SMTP server disconnected: {exc}")
            except aiosmtplib.SMTPRecipientsRefused as exc:
                self._release(client)
                first = exc.recipients[0] if exc.recipients else None
                code = getattr(first, "code", 550)
                text = f"SMTP {code} {getattr(first, 'message', '')}".strip()
                return Failed(text) if code >= 500 else TryLater(text)
            except aiosmtplib.SMTPResponseException as exc:
                self._release(client)
                text = f"SMTP {exc.code} {exc.message}"
                return Failed(text) if exc.code >= 500 else TryLater(text)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _quietly_close(client)
                self._release(None)
                return TryLater(f"SMTP connection failed: {type(exc).__name__}: {exc}")
        return TryLater("SMTP send failed")  # pragma: no cover - the loop always returns

    async def _close_all(self) -> None:
        while self._idle is not None and not self._idle.empty():
            await _quietly_close(self._idle.get_nowait())


async def _quietly_close(client: Any) -> None:
    if client is None:
        return
    try:
        if client.is_connected:
            await client.quit()
    except Exception:  # closing a broken session: nothing to report
        client.close()
