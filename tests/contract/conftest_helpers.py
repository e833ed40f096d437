from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

from leadloop.log.writer import Writer
from leadloop.outbox.service import Claimed, Outcome


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


class HeldSender:
    """A batch sender that notes the ids it is handed in `sent`, sets `started`, and holds them
    (a slow receiver, or a worker hung mid-send) until `release`; then they are delivered."""

    def __init__(self, sent: list[int], started: threading.Event, release: threading.Event) -> None:
        self.sent, self.started, self.release = sent, started, release

    def send_batch(self, items: list[Claimed], now: float) -> list[Outcome]:
        self.sent.extend(item.id for item in items)
        self.started.set()
        assert self.release.wait(20)
        return [Outcome("delivered") for _ in items]
