from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from leadloop.log.writer import Writer


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


def hold(writer: Writer) -> tuple[threading.Event, Future[None]]:
    """Hold the writer on a job until the event is set, so what comes next queues up."""
    holding, release = threading.Event(), threading.Event()

    def wait(_: Any) -> None:
        holding.set()
        release.wait(30)

    held = writer.submit(wait)
    assert holding.wait(30)
    return release, held
