"""Local fakes of the WhatsApp Cloud API, Instagram messaging, Twilio Messages, Meta Custom
Audiences and Google Customer Match (Data Manager API), for tests, benchmarks and dry runs.

One loopback HTTP server (stdlib, a thread, port 0) serves all five. Each fake checks the
method, path, headers, auth and body shape of every request against the provider's documented
format (each check names its doc) and answers with the provider's own error envelope when a check
fails. Planned answers (429, 500, documented 4xx errors) are served first-in first-out, before any
check, so tests can script retries.

    with FakeMessagingServer() as fake:
        fake.twilio.plan_rate_limit()
        ...  # point the channels section's api_base values at fake.base_url
        assert fake.twilio.accepted[0]["Body"] == "Hi"

Google Customer Match receives only hashes, so whether they were normalised right can only be
told by someone who knows the person: `fake.google_person("ada", email=..., phone=...)` hashes
the raw identifiers by Google's documented rules (its own code, not the engine's) and the fake
files each received hash under that label (`google_members`), or as unmatched.

This module is the server and its routing; each provider's request checks are in
`messaging_meta` (WhatsApp, Instagram, Custom Audiences), `messaging_twilio` and
`messaging_google` (Customer Match); what they share is `messaging_base`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from leadloop.testing_fakes.messaging_base import FakeProvider, Recorded, Refused, Response
from leadloop.testing_fakes.messaging_google import (
    check_customer_match,
    google_email,
    google_phone,
    sha256_hex,
)
from leadloop.testing_fakes.messaging_meta import check_audience, check_instagram, check_whatsapp
from leadloop.testing_fakes.messaging_twilio import check_twilio

Check = Callable[["FakeMessagingServer", str, str, dict[str, str], bytes], Response]
"""One provider's checks of a request (method, path, lower-cased headers, raw body)."""


class FakeMessagingServer:
    def __init__(
        self,
        *,
        whatsapp_token: str = "wa-token",
        phone_number_id: str = "1111",
        instagram_token: str = "ig-token",
        instagram_account: str = "me",
        twilio_sid: str = "AC" + "0" * 32,
        twilio_token: str = "twilio-token",
        audience_token: str = "ads-token",
        audience_id: str = "2222",
        google_token: str = "google-token",
        google_account: str = "1234567890",
        google_user_list: str = "3333",
        version: str = "v21.0",
    ) -> None:
        self.whatsapp = FakeProvider("whatsapp")
        self.instagram = FakeProvider("instagram")
        self.twilio = FakeProvider("twilio")
        self.audiences = FakeProvider("audiences")
        self.google = FakeProvider("google")
        self.google_token = google_token
        self.google_account = google_account
        self.google_user_list = google_user_list
        self.google_people: dict[str, str] = {}
        """Expected hash → `label:email` / `label:phone` (`google_person`)."""
        self.google_members: set[str] = set()
        """Labels of the identifiers currently in the user list (matched hashes)."""
        self.google_unmatched: list[str] = []
        """Well-formed hashes that match no known person (e.g. normalised the wrong way)."""
        self.open_instagram_windows: set[str] = set()
        """IGSIDs that messaged us in the last 24 hours (others need the HUMAN_AGENT tag)."""
        self.whatsapp_token = whatsapp_token
        self.phone_number_id = phone_number_id
        self.instagram_token = instagram_token
        self.instagram_account = instagram_account
        self.twilio_sid = twilio_sid
        self.twilio_token = twilio_token
        self.audience_token = audience_token
        self.audience_id = audience_id
        self.version = version
        self.open_windows: set[str] = set()
        """WhatsApp numbers (digits) that wrote to us in the last 24 hours."""
        self.audience_members: set[tuple[str, str]] = set()
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def google_person(self, label: str, *, email: str = "", phone: str = "") -> None:
        """Someone Google knows: received hashes of their identifiers, normalised by Google's
        rules, are filed as `label:email` / `label:phone`."""
        if email:
            self.google_people[sha256_hex(google_email(email))] = f"{label}:email"
        if phone:
            self.google_people[sha256_hex(google_phone(phone))] = f"{label}:phone"

    def next_id(self) -> int:
        """A fresh number for the message, request and session ids the providers answer with."""
        return next(self._ids)

    def __enter__(self) -> FakeMessagingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- routing -------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[FakeProvider, Check] | None:
        v = re.escape(self.version)
        if re.fullmatch(rf"/{v}/{re.escape(self.phone_number_id)}/messages", path):
            return self.whatsapp, check_whatsapp
        if re.fullmatch(rf"/{v}/[^/]+/messages", path):
            return self.instagram, check_instagram
        if re.fullmatch(r"/2010-04-01/Accounts/[^/]+/Messages\.json", path):
            return self.twilio, check_twilio
        if re.fullmatch(rf"/{v}/[^/]+/users", path):
            return self.audiences, check_audience
        if path in ("/v1/audienceMembers:ingest", "/v1/audienceMembers:remove"):
            return self.google, check_customer_match
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                headers = {k.lower(): v for k, v in self.headers.items()}
                routed = fake._route(self.command, path)
                if routed is None:
                    self._answer(404, {}, {"error": {"message": "unknown path", "code": 803}})
                    return
                provider, check = routed
                planned = provider._next_planned()
                body: Any = raw
                try:
                    if planned is not None:
                        provider.requests.append(Recorded(self.command, path, headers, raw))
                        self._answer(*planned)
                        return
                    status, extra, answer = check(fake, self.command, path, headers, raw)
                except Refused as refused:
                    status, extra, answer = refused.status, {}, refused.body
                provider.requests.append(Recorded(self.command, path, headers, body))
                self._answer(status, extra, answer)

            do_POST = _serve
            do_DELETE = _serve
            do_GET = _serve

            def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
