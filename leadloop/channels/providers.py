"""What a provider's HTTP answer means for a message (shared by the HTTP channels).

* 2xx: sent (the provider's message id is read by the channel).
* 429, 408/409/425 and 5xx, and network errors: try later, honouring Retry-After
  (`outbox.decide.classify_http`).
* Meta's throttling errors arrive as HTTP 400 with a code (Graph API "Error codes" and WhatsApp
  Cloud API "Error codes": 4, 17, 32, 613, 80007, 130429, 131048, 131056): try later too.
* Any other 4xx: failed for good, with the provider's own reason (`error.message` and code for
  Graph, `message` and `code` for Twilio, `status`, `ErrorInfo.reason` and `message` for
  Google), never retried: the same request stays refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import msgspec

from leadloop.channels.model import Failed, SendResult, Sent, TryLater
from leadloop.outbox.decide import Dead, Delivered, Retry, classify_http

META_THROTTLING = frozenset({4, 17, 32, 613, 80007, 130429, 131048, 131056})
_decoder = msgspec.json.Decoder()


def _json(response: httpx2.Response) -> Any:
    try:
        return _decoder.decode(response.content)
    except msgspec.DecodeError:
        return None


def provider_reason(body: Any, status: int) -> str:
    """The provider's explanation, as it wrote it."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("status"), str):
            return _google_reason(error, status)
        if isinstance(error, dict):  # Graph API
            code = error.get("code")
            sub = error.get("error_subcode")
            text = str(error.get("message") or error.get("error_user_msg") or "")
            details = (
                error.get("error_data", {}).get("details")
                if isinstance(error.get("error_data"), dict)
                else None
            )
            label = f"{code}/{sub}" if sub else f"{code}"
            return f"HTTP {status}: ({label}) {text}" + (f": {details}" if details else "")
        if "code" in body and "message" in body:  # Twilio
            return f"HTTP {status}: ({body['code']}) {body['message']}"
        if isinstance(body.get("message"), str):  # Google
            return f"HTTP {status}: {body['message']}"
    return f"HTTP {status}"


def _google_reason(error: dict[str, Any], status: int) -> str:
    """Google APIs' `google.rpc.Status` envelope (Data Manager "Errors"): the canonical status,
    the `ErrorInfo.reason` (Data Manager `ErrorReason`, e.g. `INVALID_USER_LIST_ID`), the message
    and the `BadRequest` field violations."""
    reasons: list[str] = []
    fields: list[str] = []
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        if isinstance(detail.get("reason"), str):
            reasons.append(detail["reason"])
        for violation in detail.get("fieldViolations") or []:
            if isinstance(violation, dict) and violation.get("field"):
                described = violation.get("description") or violation.get("reason") or ""
                fields.append(f"{violation['field']}: {described}".rstrip(": "))
    label = " ".join([str(error["status"]), *dict.fromkeys(reasons)])
    text = f"HTTP {status}: ({label}) {error.get('message') or ''}".rstrip()
    return text + (f" [{'; '.join(fields)}]" if fields else "")


def _meta_code(body: Any) -> int | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, int) else None
    return None


def interpret(response: httpx2.Response, now: float, provider_id: str = "") -> SendResult:
    """The outcome of an answer; `provider_id` is what the channel read from a 2xx body."""
    body = _json(response)
    verdict = classify_http(response.status_code, dict(response.headers), now)
    if isinstance(verdict, Delivered):
        return Sent(provider_id)
    reason = provider_reason(body, response.status_code)
    if isinstance(verdict, Dead):
        return Failed(reason)
    assert isinstance(verdict, Retry)
    if verdict.client_error:
        if _meta_code(body) in META_THROTTLING:
            return TryLater(reason, verdict.after)
        return Failed(reason)
    return TryLater(reason, verdict.after)


def body_of(response: httpx2.Response) -> Any:
    return _json(response)


def post(
    client: httpx2.Client,
    method: str,
    url: str,
    now: float,
    *,
    json: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    read_id: Any = None,
) -> SendResult:
    """Send one request; `read_id(body)` extracts the provider's message id from a 2xx body."""
    try:
        response = client.request(
            method,
            url,
            content=msgspec.json.encode(json) if json is not None else None,
            data=data,
            headers={
                **({"content-type": "application/json"} if json is not None else {}),
                **(headers or {}),
            },
            auth=auth,
        )
    except httpx2.HTTPError as exc:
        return TryLater(f"network error: {type(exc).__name__}: {exc}")
    result = interpret(response, now)
    if isinstance(result, Sent) and read_id is not None:
        found = read_id(_json(response))
        return Sent(str(found) if found else "")
    return result
