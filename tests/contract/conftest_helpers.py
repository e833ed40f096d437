from __future__ import annotations

from typing import Any


def ident(
    anon: str | None, user: str | None, ts: str | None = None, **traits: Any
) -> dict[str, Any]:
    m: dict[str, Any] = {"type": "identify", "anonymousId": anon, "userId": user, "traits": traits}
    if ts:
        m["timestamp"] = ts
    return m


def track(anon: str | None, user: str | None, event: str, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "anonymousId": anon,
        "userId": user,
        "event": event,
        "properties": props,
    }
