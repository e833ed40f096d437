from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.identity import queries
from leadloop.ingest import parse
from leadloop.storage import workspaces
from leadloop.testing import eventually


class Harness:
    """An in-process engine (writer, processor, timers) on one backend, without HTTP."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def send(self, *messages: dict[str, Any], workspace: str = "default") -> None:
        accepted = parse.parse_request(
            {"batch": list(messages)}, None, received_at=self.engine.clock.now()
        )
        assert isinstance(accepted, list), accepted
        self.engine.writer.append(workspace, accepted).result(timeout=30)

    def settle(self) -> None:
        # The processor commits its batch before the cursor moves, but a lag of 0 may also
        # mean an erasure deleted the events of a batch it has not dropped yet.
        processor = self.engine.processor
        eventually(
            lambda: self.engine.read_sync(self.engine.status)["lag"] == 0 and processor.is_idle(),
            timeout=30,
        )

    def profile(self, kind: str, value: str, workspace: str = "default") -> dict[str, Any] | None:
        def run(c: Any) -> dict[str, Any] | None:
            pid = queries.lookup(c, workspace, kind, value)
            return None if pid is None else queries.profile_view(c, workspace, pid)

        view = self.engine.read_sync(run)
        return None if view is None else self.engine.decorate_profile(view)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.engine.read_sync(lambda c: c.execute(query, params))

    def add_workspace(self, name: str) -> None:
        now = self.engine.clock.now()
        self.engine.writer.submit(lambda c: workspaces.ensure_workspace(c, name, now)).result()

    def advance(self, seconds: float) -> None:
        """Move the manual clock; due timers become events and are processed."""
        assert self.engine.manual_clock is not None
        self.engine.manual_clock.advance(seconds)
        self.engine.settle_timers()
        self.settle()


def make_harness(
    backend_url: str,
    playbook: str | None = None,
    *,
    default_region: str | None = None,
    env: dict[str, str] | None = None,
    start: bool = True,
) -> Harness:
    """`env`: settings as `LEADLOOP_*` variables would give them; `start=False`: the caller
    starts the engine (after adding a stage, say)."""
    settings = Settings.from_env(env) if env else Settings()
    engine = Engine(
        replace(
            settings, database_url=backend_url, playbook=playbook, default_region=default_region
        ),
        clock=ManualClock(1_800_000_000.0),
        manual_clock=True,
    )
    if start:
        engine.start()
    return Harness(engine)


@pytest.fixture
def harness(backend_url: str) -> Iterator[Harness]:
    h = make_harness(backend_url)
    try:
        yield h
    finally:
        h.engine.stop()


EXAMPLE_PLAYBOOK = str(Path(__file__).resolve().parents[2] / "examples" / "playbook.yaml")


@pytest.fixture
def scoring_harness(backend_url: str) -> Iterator[Harness]:
    h = make_harness(backend_url, EXAMPLE_PLAYBOOK)
    try:
        yield h
    finally:
        h.engine.stop()


CHANNEL_ENV = {
    # Every channel of the example playbook configured (pointing at closed loopback ports), so
    # the policy sees them enabled; journey tests record sends instead of delivering them.
    "LEADLOOP_SMTP_URL": "smtp://127.0.0.1:9",
    "LEADLOOP_EMAIL_FROM": "Leadloop <hello@leadloop.test>",
    "LEADLOOP_WHATSAPP_API_BASE": "http://127.0.0.1:9",
    "LEADLOOP_WHATSAPP_TOKEN": "wa-token",
    "LEADLOOP_WHATSAPP_PHONE_NUMBER_ID": "1000",
    "LEADLOOP_INSTAGRAM_API_BASE": "http://127.0.0.1:9",
    "LEADLOOP_INSTAGRAM_TOKEN": "ig-token",
    "LEADLOOP_TWILIO_API_BASE": "http://127.0.0.1:9",
    "LEADLOOP_TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
    "LEADLOOP_TWILIO_AUTH_TOKEN": "twilio-token",
    "LEADLOOP_TWILIO_FROM": "+15005550006",
    "LEADLOOP_META_APP_SECRET": "meta-secret",
}


@pytest.fixture
def channels_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CHANNEL_ENV.items():
        monkeypatch.setenv(name, value)
