"""Local fake of Meta's Conversions API (`POST /{version}/{pixel}/events`, capi.md §1): checks
every event the way Meta documents it, answers with the Graph API error envelope, and keeps
Meta's dedup (event name + event id within 48 hours). The server is `ads`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import Any

from leadloop.clock import Clock
from leadloop.testing_fakes.base import DAY, HEX64, FakePlatform, Invalid, Recorded, Response
from leadloop.testing_fakes.base import require as _require
from leadloop.testing_fakes.base import require_list as _require_list


def _check_hex_list(value: Any, what: str, index: int) -> None:
    # Meta emits hashed keys as arrays of lowercase SHA-256 hex (capi.md §1.3). Messages are
    # built only on failure: this runs for every key of every event of a 1,000-event batch.
    if not isinstance(value, list) or not value:
        raise Invalid(f"{what} must be an array", index)
    for item in value:
        if not isinstance(item, str) or len(item) != 64 or not HEX64.fullmatch(item):
            raise Invalid(f"{what} not hashed", index)


META_ACTION_SOURCES = frozenset(
    {"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated"}
    | {"business_messaging", "other"}
)  # capi.md §1.2, SDK 26.0.3 enum
META_HASHED = frozenset({"em", "ph", "fn", "ln", "ge", "db", "ct", "st", "zp", "country"})  # §1.3
META_PLAIN = frozenset({"client_ip_address", "client_user_agent", "fbc", "fbp", "lead_id"})  # §1.3
LEAD_ID = re.compile(r"[0-9]{15,16}")  # ASCII, as Meta writes them
CURRENCY = re.compile(r"[A-Za-z]{3}")
CURRENCY_MESSAGE = "currency must be 3 letters"


class FakeMeta(FakePlatform):
    def __init__(self, clock: Clock, access_token: str, app_secret: str | None) -> None:
        super().__init__(clock)
        self.access_token = access_token
        self.app_secret = app_secret

    def plan_bad_event(self, index: int, subcode: int = 2804003) -> None:
        """A whole-batch 400 naming one event, as when one `event_time` is too old (§1.1).
        The "Event index: i" wording is this fake's convention; `decide` reads it as a hint."""
        self.plan(400, _graph_error(100, f"Invalid parameter. Event index: {index}", subcode))

    def plan_graph_error(self, status: int, code: int, subcode: int | None = None) -> None:
        self.plan(status, _graph_error(code, "planned error", subcode))

    def _rate_limit_body(self) -> Any:
        return _graph_error(17, "User request limit reached")  # §1.5: throttling family

    def serve(self, request: Recorded) -> Response:
        # §1.1: token in the query string; wrong token is a Graph OAuthException, code 190.
        if request.query.get("access_token") != self.access_token:
            return 400, {}, _graph_error(190, "Invalid OAuth access token.")
        body = request.body if isinstance(request.body, dict) else {}
        if self.app_secret is not None:
            # §1.1: appsecret_proof = HMAC-SHA256(app_secret, access_token) hex.
            expected = hmac.new(
                self.app_secret.encode(), self.access_token.encode(), hashlib.sha256
            ).hexdigest()
            proof = body.get("appsecret_proof") or request.query.get("appsecret_proof")
            if proof != expected:
                return 400, {}, _graph_error(100, "Invalid appsecret_proof")
        try:
            events = self._check(body)
        except Invalid as invalid:
            subcode = 2804003 if "too old" in str(invalid) else None
            message = str(invalid)
            if invalid.index is not None:
                message += f". Event index: {invalid.index}"
            return 400, {}, _graph_error(100, message, subcode)
        # §1.1: test events show in Test Events only; §1.2: same name + id within 48 h, first kept.
        self._record_within_window(events, "event_name", bool(body.get("test_event_code")))
        return 200, {}, {"events_received": len(events), "messages": [], "fbtrace_id": "fake"}

    def _check(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        data = body.get("data")
        if isinstance(data, str):  # form-encoded bodies carry `data` as a JSON string (§1.1)
            data = json.loads(data)
        data = _require_list(data, 1000, "data must hold 1-1000 events")
        now = self.clock.now()
        for i, event in enumerate(data):
            _require(isinstance(event, dict), "event must be an object", i)
            _require(bool(event.get("event_name")), "event_name required", i)
            event_time = event.get("event_time")
            _require(isinstance(event_time, int), "event_time must be integer seconds", i)
            source = event.get("action_source")
            _require(source in META_ACTION_SOURCES, "action_source invalid", i)
            # §1.1: ≤7 days (62 for physical_store); one old event fails the whole request.
            max_age = (62 if source == "physical_store" else 7) * DAY
            _require(now - event_time <= max_age, "event_time too old", i)
            user = event.get("user_data")
            if not isinstance(user, dict) or not user:
                raise Invalid("user_data required", i)
            if source == "website":  # §1.2: web events need these two
                _require(bool(event.get("event_source_url")), "event_source_url required", i)
                _require(bool(user.get("client_user_agent")), "client_user_agent required", i)
            for key, value in user.items():
                if key in META_HASHED:
                    _check_hex_list(value, key, i)
                elif key in META_PLAIN and not isinstance(value, str):
                    raise Invalid(f"{key} must be a string", i)
            if "external_id" in user:  # hashing recommended, not required (§1.3)
                _require(isinstance(user["external_id"], list), "external_id must be an array", i)
            if "lead_id" in user:  # §1.4: the 15-16 digit leadgen_id, unhashed
                _require(bool(LEAD_ID.fullmatch(user["lead_id"])), "lead_id invalid", i)
            custom = event.get("custom_data", {})
            _require(isinstance(custom, dict), "custom_data must be an object", i)
            if "currency" in custom:  # §1.2: ISO-4217
                _require(bool(CURRENCY.fullmatch(str(custom["currency"]))), CURRENCY_MESSAGE, i)
            options = event.get("data_processing_options")
            if options is not None:  # §6.4: ["LDU"] + country/state, or []
                _require(options in ([], ["LDU"]), "data_processing_options invalid", i)
                if options == ["LDU"]:
                    where = ("data_processing_options_country", "data_processing_options_state")
                    ints = all(isinstance(event.get(key), int) for key in where)
                    _require(ints, "LDU needs country and state", i)
        return data


def _graph_error(code: int, message: str, subcode: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error.update(error_subcode=subcode, error_user_msg=message)
    error["fbtrace_id"] = "fake"
    return {"error": error}  # §1.5 envelope
