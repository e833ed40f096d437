"""The validated playbook: frozen values, built once by `load.load_playbook`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from leadloop.playbook.nodes import Node
from leadloop.scoring.model import ScoringModel


@dataclass(frozen=True, slots=True)
class PlaybookWarning:
    """Something that works but is switched off, e.g. a webhook whose secret is unset."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: str
    url: str
    secret: str = field(repr=False)
    enabled: bool
    """False when `url` or `secret` is empty: we never send an unsigned webhook."""


SourceKind = Literal["standard", "stripe", "hubspot"]
SOURCE_KINDS: tuple[SourceKind, ...] = ("standard", "stripe", "hubspot")


@dataclass(frozen=True, slots=True)
class InboundSource:
    """A sender of signed webhooks into the engine (`POST /hooks/inbound/{workspace}/{id}`)."""

    id: str
    kind: SourceKind
    secret: str = field(repr=False)
    enabled: bool
    """False when `secret` is empty: an unsigned delivery is never accepted."""
    public_url: str = ""
    """`hubspot`: the base URL the sender calls (scheme, host, any path prefix of a proxy),
    when it is not the one the engine sees; HubSpot signs the URL it called."""
    legacy_signatures: bool = False
    """`hubspot`: also accept the v1/v2 `X-HubSpot-Signature`, which has no timestamp and so
    can be replayed forever by anyone who saw one request."""


@dataclass(frozen=True, slots=True)
class Playbook:
    version: str
    """As declared in the file (`version: 3`); `digest` identifies the content."""
    workspace: str
    digest: str
    models: tuple[ScoringModel, ...]
    webhooks: tuple[WebhookEndpoint, ...]
    files: tuple[str, ...]
    warnings: tuple[PlaybookWarning, ...] = ()
    sources: tuple[InboundSource, ...] = ()
    sections: Mapping[str, Node] = field(default_factory=dict, repr=False)
    """`journeys`, `conversions` and `channels` as located trees, for their stages to validate
    with the same file/line errors (see `playbook.fields.Fields`)."""
    raw: Any = field(default=None, repr=False, compare=False)
    """The merged playbook before `${ENV}` substitution: what the digest and diff read."""

    def model(self, model_id: str) -> ScoringModel | None:
        return next((model for model in self.models if model.id == model_id), None)

    def webhook(self, webhook_id: str) -> WebhookEndpoint | None:
        return next((hook for hook in self.webhooks if hook.id == webhook_id), None)

    def source(self, source_id: str) -> InboundSource | None:
        return next((source for source in self.sources if source.id == source_id), None)
