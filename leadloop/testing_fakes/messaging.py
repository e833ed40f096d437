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
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HEX64 = re.compile(r"[0-9a-f]{64}")
E164 = re.compile(r"\+[1-9]\d{6,14}")
WA_DIGITS = re.compile(r"[1-9]\d{6,14}")

Response = tuple[int, dict[str, str], Any]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Refused(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


@dataclass
class FakeProvider:
    name: str
    requests: list[Recorded] = field(default_factory=list)
    accepted: list[Any] = field(default_factory=list)
    _planned: deque[Response] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def plan(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._planned.append((status, headers or {}, body))

    def plan_server_error(self, status: int = 500) -> None:
        self.plan(status, self.error_body(status, "planned server error", 1))

    def plan_rate_limit(self, retry_after: int = 1) -> None:
        # Twilio: HTTP 429, error 20429 (Twilio "Error 20429: Too Many Requests").
        # Graph API: HTTP 429/400 with code 4 ("Application request limit reached"; WhatsApp
        # throughput is 130429 "Rate limit hit", Cloud API "Error codes").
        # Data Manager: HTTP 429 RESOURCE_EXHAUSTED ("Limits and quotas"; ErrorReason).
        code = {"twilio": 20429, "whatsapp": 130429}.get(self.name, 4)
        self.plan(
            429, self.error_body(429, "rate limit hit", code), {"Retry-After": str(retry_after)}
        )

    def error_body(
        self, status: int, message: str, code: int, reason: str = "", field_path: str = ""
    ) -> Any:
        if self.name == "google":
            return google_error(status, message, reason, field_path)
        if self.name == "twilio":
            # Twilio REST API error envelope ("REST API: Errors").
            return {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
        # Graph API error envelope ("Graph API: Handling errors").
        return {
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "AbCdEfGh",
            }
        }

    def _next_planned(self) -> Response | None:
        with self._lock:
            return self._planned.popleft() if self._planned else None


# --- Google Data Manager -------------------------------------------------------------------------
# Data Manager API reference, "audienceMembers.ingest" / "audienceMembers.remove" (REST v1),
# "Destination", "AudienceMember", "UserData", "Encoding", "ErrorReason"; "Format user data"
# (devguides/concepts/formatting) for the normalisation; standard Google API errors
# (`google.rpc.Status`) for the envelope.

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
GOOGLE_ACCOUNT_TYPES = {"GOOGLE_ADS", "DISPLAY_VIDEO_PARTNER", "DISPLAY_VIDEO_ADVERTISER", 1, 2, 3}
GOOGLE_CONSENT = {"CONSENT_GRANTED", "CONSENT_DENIED", 1, 2}
INGEST_FIELDS = frozenset(
    {
        "destinations",
        "audienceMembers",
        "consent",
        "validateOnly",
        "encoding",
        "encryptionInfo",
        "termsOfService",
    }
)
REMOVE_FIELDS = frozenset(
    {"destinations", "audienceMembers", "validateOnly", "encoding", "encryptionInfo"}
)
_GMAIL = ("gmail.com", "googlemail.com")


def google_error(status: int, message: str, reason: str = "", field_path: str = "") -> Any:
    """`google.rpc.Status` with an `ErrorInfo` (Data Manager `ErrorReason`) and, for a field,
    a `BadRequest` field violation."""
    details: list[dict[str, Any]] = []
    if reason:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "datamanager.googleapis.com",
            }
        )
    if field_path:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field_path, "description": message}],
            }
        )
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def google_email(email: str) -> str:
    """ "Format user data", email: remove all whitespace (leading, trailing, intermediate),
    lowercase; for gmail.com and googlemail.com, drop every `.` of the local part and a `+`
    with everything after it."""
    compact = re.sub(r"\s+", "", email).lower()
    local, _, domain = compact.rpartition("@")
    if domain in _GMAIL:
        local = local.split("+", 1)[0].replace(".", "")
    return f"{local}@{domain}"


def google_phone(phone: str) -> str:
    """ "Format user data", phone: E.164, `+` and country code included. The caller gives the
    number with its country code; only formatting characters are removed here."""
    digits = re.sub(r"\D", "", phone)
    return f"+{digits}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
            self.google_people[_sha(google_email(email))] = f"{label}:email"
        if phone:
            self.google_people[_sha(google_phone(phone))] = f"{label}:phone"

    def __enter__(self) -> FakeMessagingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- routing -------------------------------------------------------------------------

    def _route(self, method: str, path: str) -> tuple[FakeProvider, Callable[..., Response]] | None:
        v = re.escape(self.version)
        if re.fullmatch(rf"/{v}/{re.escape(self.phone_number_id)}/messages", path):
            return self.whatsapp, self._whatsapp
        if re.fullmatch(rf"/{v}/[^/]+/messages", path):
            return self.instagram, self._instagram
        if re.fullmatch(r"/2010-04-01/Accounts/[^/]+/Messages\.json", path):
            return self.twilio, self._twilio
        if re.fullmatch(rf"/{v}/[^/]+/users", path):
            return self.audiences, self._audience
        if path in ("/v1/audienceMembers:ingest", "/v1/audienceMembers:remove"):
            return self.google, self._google
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
                    status, extra, answer = check(self.command, path, headers, raw)
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

    # -- checks --------------------------------------------------------------------------

    def _bearer(self, provider: FakeProvider, headers: dict[str, str], token: str) -> None:
        # Graph API: "Authorization: Bearer <access token>" (WhatsApp Cloud API "Get started";
        # Instagram API with Instagram Login "Send API"); a bad token is 401, code 190.
        if headers.get("authorization") != f"Bearer {token}":
            raise Refused(401, provider.error_body(401, "Invalid OAuth access token.", 190))

    def _json(self, provider: FakeProvider, headers: dict[str, str], raw: bytes) -> Any:
        if not headers.get("content-type", "").startswith("application/json"):
            raise Refused(400, provider.error_body(400, "expected application/json", 100))
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise Refused(400, provider.error_body(400, "malformed JSON", 100)) from exc

    def _whatsapp(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Response:
        p = self.whatsapp
        # WhatsApp Cloud API reference, "Messages": POST /{Version}/{Phone-Number-ID}/messages.
        if method != "POST":
            raise Refused(405, p.error_body(405, "method not allowed", 100))
        self._bearer(p, headers, self.whatsapp_token)
        body = self._json(p, headers, raw)
        invalid = Refused(400, p.error_body(400, "(#100) Invalid parameter", 100))
        if body.get("messaging_product") != "whatsapp" or not isinstance(body.get("to"), str):
            raise invalid
        to = body["to"].lstrip("+")
        if not WA_DIGITS.fullmatch(to):
            raise invalid
        kind = body.get("type", "text")
        content = body.get(kind)
        if kind == "text":
            if not isinstance(content, dict) or not isinstance(content.get("body"), str):
                raise invalid
        elif kind == "template":
            # "Template messages": template.name and template.language.code are required.
            if (
                not isinstance(content, dict)
                or not content.get("name")
                or not isinstance(content.get("language"), dict)
                or not content["language"].get("code")
            ):
                raise invalid
        elif kind in ("image", "video", "audio", "document", "sticker"):
            # "Media messages": a media object with `id` or `link`.
            if not isinstance(content, dict) or not (content.get("link") or content.get("id")):
                raise invalid
        else:
            raise invalid
        if kind != "template" and to not in self.open_windows:
            # Cloud API error 131047 "Re-engagement message": more than 24 hours since the
            # customer last replied; only a template message may be sent.
            raise Refused(
                400,
                p.error_body(
                    400,
                    "Re-engagement message: more than 24 hours have passed since the recipient "
                    "last replied",
                    131047,
                ),
            )
        wamid = f"wamid.{next(self._ids)}"
        p.accepted.append({**body, "_id": wamid})
        return (
            200,
            {},
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body["to"], "wa_id": to}],
                "messages": [{"id": wamid}],
            },
        )

    def _instagram(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Response:
        p = self.instagram
        # Instagram API with Instagram Login, "Send API": POST /{version}/{IG ID or me}/messages,
        # {"recipient": {"id": IGSID}, "message": {"text"} | {"attachment": {type, payload.url}}}.
        if method != "POST":
            raise Refused(405, p.error_body(405, "method not allowed", 100))
        self._bearer(p, headers, self.instagram_token)
        body = self._json(p, headers, raw)
        invalid = Refused(400, p.error_body(400, "(#100) Invalid parameter", 100))
        recipient = body.get("recipient")
        message = body.get("message")
        if (
            not isinstance(recipient, dict)
            or not recipient.get("id")
            or not isinstance(message, dict)
        ):
            raise invalid
        if "text" in message:
            if not isinstance(message["text"], str) or len(message["text"].encode()) > 1000:
                raise invalid
        else:
            attachment = message.get("attachment")
            if (
                not isinstance(attachment, dict)
                or attachment.get("type") not in ("image", "video", "audio", "file")
                or not isinstance(attachment.get("payload"), dict)
                or not attachment["payload"].get("url")
            ):
                raise invalid
        tag = body.get("tag")
        # "Send API", message tags: `messaging_type: MESSAGE_TAG` with `tag: HUMAN_AGENT`.
        if tag is not None and (
            body.get("messaging_type") != "MESSAGE_TAG" or tag != "HUMAN_AGENT"
        ):
            raise invalid
        if tag is None and recipient["id"] not in self.open_instagram_windows:
            # Outside the 24-hour messaging window: Graph error 10, subcode 2534022.
            raise Refused(
                400,
                {
                    "error": {
                        "message": "(#10) This message is sent outside of allowed window.",
                        "type": "OAuthException",
                        "code": 10,
                        "error_subcode": 2534022,
                        "fbtrace_id": "AbCdEfGh",
                    }
                },
            )
        mid = f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE{next(self._ids)}"
        p.accepted.append({**body, "_id": mid})
        return 200, {}, {"recipient_id": recipient["id"], "message_id": mid}

    def _twilio(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Response:
        p = self.twilio
        # Twilio "Messages resource", create: POST /2010-04-01/Accounts/{AccountSid}/Messages.json,
        # HTTP Basic auth (Account SID : Auth Token), application/x-www-form-urlencoded.
        if method != "POST":
            raise Refused(405, p.error_body(405, "method not allowed", 20004))
        expected = base64.b64encode(f"{self.twilio_sid}:{self.twilio_token}".encode()).decode()
        if (
            headers.get("authorization") != f"Basic {expected}"
            or f"/Accounts/{self.twilio_sid}/" not in path
        ):
            raise Refused(401, p.error_body(401, "Authenticate", 20003))
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            raise Refused(400, p.error_body(400, "expected a form", 20001))
        form = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        if not form.get("Body") and not form.get("MediaUrl"):
            raise Refused(400, p.error_body(400, "A 'Body' or 'MediaUrl' is required", 21602))
        if not E164.fullmatch(form.get("To", "")):
            to = form.get("To", "")
            raise Refused(
                400, p.error_body(400, f"The 'To' number {to} is not a valid phone number.", 21211)
            )
        if not form.get("From") and not form.get("MessagingServiceSid"):
            raise Refused(400, p.error_body(400, "A 'From' phone number is required.", 21603))
        if len(form.get("Body", "")) > 1600:
            raise Refused(
                400,
                p.error_body(
                    400, "The concatenated message body exceeds the 1600 character limit.", 21617
                ),
            )
        sid = f"SM{next(self._ids):032x}"
        p.accepted.append({**form, "_id": sid})
        return (
            201,
            {},
            {
                "sid": sid,
                "account_sid": self.twilio_sid,
                "to": form["To"],
                "from": form.get("From"),
                "body": form.get("Body", ""),
                "status": "queued",
                "num_segments": "1",
            },
        )

    def _audience(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Response:
        p = self.audiences
        # Marketing API "Custom Audience users": POST (add) / DELETE (remove)
        # /{version}/{custom_audience_id}/users with payload {schema, data}; identifiers
        # SHA-256 hashed after normalisation ("Customer file custom audiences: hashing").
        if method not in ("POST", "DELETE"):
            raise Refused(405, p.error_body(405, "method not allowed", 100))
        self._bearer(p, headers, self.audience_token)
        audience = path.rstrip("/").split("/")[-2]
        if audience != self.audience_id:
            raise Refused(400, p.error_body(400, "(#100) Unsupported post request", 100))
        body = self._json(p, headers, raw)
        payload = body.get("payload")
        invalid = Refused(400, p.error_body(400, "(#100) Invalid payload", 100))
        if not isinstance(payload, dict):
            raise invalid
        schema = payload.get("schema")
        data = payload.get("data")
        known = {
            "EMAIL",
            "PHONE",
            "FN",
            "LN",
            "CT",
            "ST",
            "ZIP",
            "COUNTRY",
            "DOBY",
            "GEN",
            "EXTERN_ID",
        }
        if not isinstance(schema, list) or not schema or not set(schema) <= known:
            raise invalid
        if not isinstance(data, list) or not data:
            raise invalid
        for row in data:
            if not isinstance(row, list) or len(row) != len(schema):
                raise invalid
            for value in row:
                if value and (not isinstance(value, str) or not HEX64.fullmatch(value)):
                    # Raw PII: the fake refuses anything but lowercase SHA-256 hex.
                    raise Refused(400, p.error_body(400, "(#2650) Data must be hashed", 2650))
            key = (schema[0], row[0])
            if method == "POST":
                self.audience_members.add(key)
            else:
                self.audience_members.discard(key)
        p.accepted.append({"method": method, **payload})
        return (
            200,
            {},
            {
                "audience_id": audience,
                "session_id": str(next(self._ids)),
                "num_received": len(data),
                "num_invalid_entries": 0,
                "invalid_entry_samples": {},
            },
        )

    def _google(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Response:
        p = self.google
        add = path.endswith(":ingest")

        def bad(message: str, reason: str = "INVALID_ARGUMENT", field_path: str = "") -> Refused:
            return Refused(400, p.error_body(400, message, 3, reason, field_path))

        # REST reference: `POST https://datamanager.googleapis.com/v1/audienceMembers:ingest`
        # (and `:remove`); OAuth 2.0 bearer token with the `.../auth/datamanager` scope.
        if method != "POST":
            raise Refused(405, p.error_body(405, "method not allowed", 3))
        if headers.get("authorization") != f"Bearer {self.google_token}":
            raise Refused(
                401,
                p.error_body(
                    401, "Request had invalid authentication credentials.", 3, "UNAUTHENTICATED"
                ),
            )
        if not headers.get("content-type", "").startswith("application/json"):
            raise bad("expected application/json")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise bad("Invalid JSON payload received.") from exc
        if not isinstance(body, dict):
            raise bad("Invalid JSON payload received.")
        # Request body of each method: unknown names are refused by the JSON mapping (remove
        # has no `consent` nor `termsOfService`).
        allowed = INGEST_FIELDS if add else REMOVE_FIELDS
        for name in body:
            if name not in allowed:
                raise bad(
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
                )
        # "Destination": operatingAccount {accountType, accountId} and productDestinationId
        # (the Customer Match user list id); at most 10 (TOO_MANY_DESTINATIONS).
        destinations = body.get("destinations")
        if not isinstance(destinations, list) or not destinations:
            raise bad("destinations is required", "REQUIRED_FIELD_MISSING", "destinations")
        if len(destinations) > 10:
            raise bad("too many destinations", "TOO_MANY_DESTINATIONS", "destinations")
        for d, destination in enumerate(destinations):
            where = f"destinations[{d}]"
            account = destination.get("operatingAccount") if isinstance(destination, dict) else None
            if (
                not isinstance(account, dict)
                or account.get("accountType") not in GOOGLE_ACCOUNT_TYPES
                or not str(account.get("accountId") or "").isdigit()
            ):
                raise bad(
                    "invalid operating account", "INVALID_DESTINATION", f"{where}.operatingAccount"
                )
            if account["accountId"] != self.google_account:
                raise Refused(
                    403,
                    p.error_body(
                        403,
                        "The caller does not have permission",
                        3,
                        "PERMISSION_DENIED",
                        f"{where}.operatingAccount.accountId",
                    ),
                )
            if str(destination.get("productDestinationId") or "") != self.google_user_list:
                raise bad(
                    "The user list is not valid.",
                    "INVALID_USER_LIST_ID",
                    f"{where}.productDestinationId",
                )
        # "AudienceMember": 1-10,000 per request (TOO_MANY_AUDIENCE_MEMBERS); "UserData":
        # 1-10 userIdentifiers (TOO_MANY_USER_IDENTIFIERS), each one of emailAddress,
        # phoneNumber or address.
        members = body.get("audienceMembers")
        if not isinstance(members, list) or not members:
            raise bad("audienceMembers is required", "REQUIRED_FIELD_MISSING", "audienceMembers")
        if len(members) > 10_000:
            raise bad("too many audience members", "TOO_MANY_AUDIENCE_MEMBERS", "audienceMembers")
        # "Encoding": required for UserData uploads; HEX or BASE64 of the SHA-256 digest. This
        # fake takes HEX only, lower case (what the engine sends).
        if body.get("encoding") not in ("HEX", 1):
            raise bad("encoding must be HEX", "INVALID_ENUM_VALUE", "encoding")
        if add:
            # Customer Match terms ("audienceMembers.ingest": termsOfService) and consent
            # (request-level `consent`, or each member's; EU user consent policy).
            terms = body.get("termsOfService") or {}
            if terms.get("customerMatchTermsOfServiceStatus") not in ("ACCEPTED", 1):
                raise bad(
                    "The Customer Match terms of service have not been accepted.",
                    "TERMS_AND_CONDITIONS_NOT_SIGNED",
                    "termsOfService",
                )
        hashes: list[str] = []
        for m, member in enumerate(members):
            where = f"audienceMembers[{m}]"
            if not isinstance(member, dict):
                raise bad("invalid audience member", "INVALID_AUDIENCE_MEMBER", where)
            consent = member.get("consent") or body.get("consent") or {}
            for name, value in consent.items():
                if name not in ("adUserData", "adPersonalization") or value not in GOOGLE_CONSENT:
                    raise bad("invalid consent", "INVALID_ENUM_VALUE", f"{where}.consent.{name}")
            if add and consent.get("adUserData") not in ("CONSENT_GRANTED", 1):
                raise bad(
                    "consent for ad user data is required", "INVALID_ARGUMENT", f"{where}.consent"
                )
            identifiers = (member.get("userData") or {}).get("userIdentifiers")
            if not isinstance(identifiers, list) or not identifiers:
                raise bad(
                    "userIdentifiers is required", "REQUIRED_FIELD_MISSING", f"{where}.userData"
                )
            if len(identifiers) > 10:
                raise bad("too many identifiers", "TOO_MANY_USER_IDENTIFIERS", f"{where}.userData")
            for i, identifier in enumerate(identifiers):
                spot = f"{where}.userData.userIdentifiers[{i}]"
                keys = set(identifier) if isinstance(identifier, dict) else set()
                if len(keys) != 1 or not keys <= {"emailAddress", "phoneNumber", "address"}:
                    raise bad("exactly one identifier per entry", "INVALID_FORMAT", spot)
                (key,) = keys
                if key == "address":
                    continue
                value = identifier[key]
                if not isinstance(value, str) or not HEX64.fullmatch(value):
                    # Raw PII or a bad digest: refused, never stored.
                    raise bad(
                        "The HEX encoded value is malformed.",
                        "INVALID_HEX_ENCODING",
                        f"{spot}.{key}",
                    )
                hashes.append(value)
        if not body.get("validateOnly"):
            for value in hashes:
                label = self.google_people.get(value)
                if label is None:
                    self.google_unmatched.append(value)
                elif add:
                    self.google_members.add(label)
                else:
                    self.google_members.discard(label)
        request_id = f"fake-dm-{next(self._ids)}"
        p.accepted.append({"action": "ingest" if add else "remove", **body, "_id": request_id})
        return 200, {}, {"requestId": request_id}
