"""Small builders for scoring tests (events, profiles, models from playbook text)."""

from __future__ import annotations

import itertools
from typing import Any

from leadloop.identity.model import Profile
from leadloop.log.model import Event
from leadloop.playbook import parse_playbook
from leadloop.scoring.model import ScoringModel

DAY = 86400.0
T0 = 1_700_000_000.0
_ids = itertools.count(1)


def event(
    type: str,
    at: float,
    name: str | None = None,
    *,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    traits: dict[str, Any] | None = None,
    message_id: str | None = None,
) -> Event:
    seq = next(_ids)
    body: dict[str, Any] = {"type": type}
    if properties is not None:
        body["properties"] = properties
    if context is not None:
        body["context"] = context
    if traits is not None:
        body["traits"] = traits
    return Event(
        seq=seq,
        workspace_id="w1",
        message_id=message_id or f"m{seq}",
        type=type,
        event=name,
        user_id="u1",
        timestamp=at,
        received_at=at,
        body=body,
    )


def page(path: str, at: float) -> Event:
    return event("page", at, properties={"path": path})


def profile(traits: dict[str, Any] | None = None, at: float = T0) -> Profile:
    return Profile(
        id="p1",
        workspace_id="w1",
        traits=traits or {},
        first_seen=at,
        last_seen=at,
        last_activity=at,
    )


def model_from(text: str, env: dict[str, str] | None = None) -> ScoringModel:
    """A one-model playbook; `text` is the model mapping, indented under `models:`."""
    playbook = parse_playbook(
        "version: 1\nwebhooks:\n  - {id: sales, url: 'http://127.0.0.1:9/h', secret: whsec_abc}\n"
        "scoring:\n  models:\n" + text,
        env=env or {},
    )
    return playbook.models[0]
