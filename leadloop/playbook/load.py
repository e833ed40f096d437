"""Load a playbook from one YAML file or a folder of them, validated, with file/line errors."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from leadloop.errors import PlaybookError
from leadloop.outbox.signing import secret_key
from leadloop.playbook.diff import diff_playbooks, digest_of, playbook_digest
from leadloop.playbook.fields import Fields, fail
from leadloop.playbook.model import (
    SOURCE_KINDS,
    InboundSource,
    Playbook,
    PlaybookWarning,
    WebhookEndpoint,
)
from leadloop.playbook.nodes import (
    Map,
    Node,
    Scalar,
    Seq,
    merge,
    parse_text,
    read_text,
    to_raw,
)
from leadloop.playbook.scoring import parse_scoring

__all__ = ["diff_playbooks", "load_playbook", "parse_playbook", "playbook_digest"]

# Sections other stages validate; here we only check their shape.
OTHER_SECTIONS = ("journeys", "conversions", "channels")
_SOURCE_ID = re.compile(r"[A-Za-z0-9_.-]+")


MAX_PLAYBOOK_BYTES = 2 * 1024 * 1024
"""All of a playbook's files together (a large real one is tens of kB). Parsing is linear but
slow (PyYAML's pure-Python composer), so a wrong file is refused by size before it is parsed."""


def playbook_files(path: Path) -> list[Path]:
    """The file itself, or a folder's `*.yaml` / `*.yml` files in name order."""
    try:
        # `exists` and `is_dir` answer False only for a missing path: a name the system
        # refuses (too long) or cannot search raised out of every command that reads one.
        folder = path.is_dir()
        found = folder or path.exists()
        entries = list(path.iterdir()) if folder else []
    except OSError as error:
        raise PlaybookError(str(path), None, "", f"cannot read: {error.strerror}") from error
    if folder:
        files = sorted((p for p in entries if p.suffix in (".yaml", ".yml")), key=lambda p: p.name)
        if not files:
            raise PlaybookError(str(path), None, "", "folder has no *.yaml files")
        for file in files:
            _check_member(path, file)
        return files
    if not found:
        raise PlaybookError(str(path), None, "", "no such file or folder")
    return [path]


def _check_member(folder: Path, file: Path) -> None:
    """A folder's `*.yaml` entry is one of its files: not a folder, a broken or looping symlink
    (silently skipping those would apply less than the folder shows), nor a symlink out of the
    folder, which would store an unrelated file's text with the playbook. Symlinks within it,
    as a Kubernetes ConfigMap mounts files, are fine."""
    try:
        target = file.resolve(strict=True)
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11, 3.12)
        raise PlaybookError(str(file), None, "", f"cannot read: {error}") from error
    if not target.is_relative_to(folder.resolve()):
        raise PlaybookError(
            str(file), None, "", f"is a symlink to {target}, outside the playbook folder"
        )
    if not target.is_file():
        raise PlaybookError(str(file), None, "", "is not a file")


def read_sources(path: str | Path) -> dict[str, str]:
    """File name → text for a playbook file or folder, in merge order, at most
    `MAX_PLAYBOOK_BYTES` in all."""
    if path == "":  # `Path("")` is the current folder, which nobody typing it meant
        raise PlaybookError("<playbook>", None, "", "no playbook path given (it is empty)")
    sources: dict[str, str] = {}
    left = MAX_PLAYBOOK_BYTES
    for file in playbook_files(Path(path)):
        text = read_text(file, left)
        left -= len(text.encode("utf-8"))
        sources[str(file)] = text
    return sources


def load_playbook(path: str | Path, env: Mapping[str, str] | None = None) -> Playbook:
    """Parse, merge and validate; raises `PlaybookError` for the first problem found.

    `env` defaults to the process environment; `${NAME}` needs NAME set, `${NAME:-}` does not.
    """
    sources = read_sources(path)
    return _build(merge_sources(sources, env), tuple(sources))


def merge_sources(sources: Mapping[str, str], env: Mapping[str, str] | None = None) -> Node:
    """Each source parsed (`${ENV}` from `env`, default the process environment) and merged
    in order into one tree."""
    environment = os.environ if env is None else env
    root: Node | None = None
    for name, text in sources.items():
        tree = parse_text(text, name, environment)
        if not isinstance(tree, Map):
            fail(tree, "", "a playbook is a mapping of sections (version, scoring, ...)")
        root = tree if root is None else merge(root, tree)
    if root is None:
        raise PlaybookError("<playbook>", None, "", "the playbook is empty")
    return root


def parse_playbook(
    text: str, file: str = "<playbook>", env: Mapping[str, str] | None = None
) -> Playbook:
    """Validate playbook text that is not on disk (an upload); `file` names it in errors."""
    tree = parse_text(text, file, os.environ if env is None else env)
    if not isinstance(tree, Map):
        fail(tree, "", "a playbook is a mapping of sections (version, scoring, ...)")
    return _build(tree, (file,))


def _build(root: Node, files: tuple[str, ...]) -> Playbook:
    fields = Fields(root, "", "playbook")
    version = fields.value("version")
    if isinstance(version, bool) or not isinstance(version, str | int | float) or version == "":
        fields.fail("version", "expected a version such as 1 or '2024-06-01'")
    warnings: list[PlaybookWarning] = []
    webhooks = _webhooks(fields, warnings)
    sources = _sources(fields, warnings)
    models = parse_scoring(fields.child("scoring", "scoring"), {hook.id: hook for hook in webhooks})
    sections: dict[str, Node] = {}
    for name in OTHER_SECTIONS:
        node = fields.get(name)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            continue
        if not isinstance(node, Map | Seq):
            fields.fail(name, "expected a list or a mapping")
        sections[name] = node
    from leadloop.conversions.config import parse_conversions  # the stage owns its section

    warnings.extend(parse_conversions(sections.get("conversions")).warnings)
    raw = to_raw(root)
    return Playbook(
        version=str(version),
        workspace=fields.name("workspace") if fields.has("workspace") else "default",
        digest=digest_of(raw),
        models=models,
        webhooks=webhooks,
        sources=sources,
        files=files,
        warnings=tuple(warnings),
        sections=sections,
        raw=raw,
    )


def _webhooks(fields: Fields, warnings: list[PlaybookWarning]) -> tuple[WebhookEndpoint, ...]:
    hooks: list[WebhookEndpoint] = []
    for node, path in fields.items("webhooks"):
        hook = Fields(node, path, "webhooks[]")
        hook_id = hook.name("id")
        if any(existing.id == hook_id for existing in hooks):
            hook.fail("id", f"duplicate webhook id {hook_id!r}")
        url, secret = hook.url("url"), hook.text("secret", "")
        if secret and not secret.startswith("whsec_"):
            # Standard Webhooks secrets are `whsec_` + base64; anything else cannot sign.
            hook.fail("secret", "expected a Standard Webhooks secret (whsec_...)")
        enabled = bool(url and secret)
        if not enabled:
            missing = "url" if not url else "secret"
            warnings.append(_disabled(hook, missing, f"webhook {hook_id!r}"))
        hooks.append(WebhookEndpoint(id=hook_id, url=url, secret=secret, enabled=enabled))
    return tuple(hooks)


def _sources(fields: Fields, warnings: list[PlaybookWarning]) -> tuple[InboundSource, ...]:
    sources: list[InboundSource] = []
    for node, path in fields.items("sources"):
        source = Fields(node, path, "sources[]")
        source_id = source.name("id")
        if not _SOURCE_ID.fullmatch(source_id):
            # It is a path segment of the receiving URL.
            source.fail("id", "use letters, digits, '.', '_' or '-' (it is part of the URL)")
        if any(existing.id == source_id for existing in sources):
            source.fail("id", f"duplicate source id {source_id!r}")
        kind = source.text("kind")
        if kind not in SOURCE_KINDS:
            source.fail("kind", f"expected one of {', '.join(SOURCE_KINDS)}, got {kind!r}")
        secret = source.text("secret", "")
        if secret and kind != "hubspot" and not secret.startswith("whsec_"):
            # Both schemes' endpoint secrets start so; a Stripe API key (sk_...) does not sign.
            source.fail("secret", f"expected the {kind} endpoint's signing secret (whsec_...)")
        if secret and kind == "standard":
            try:
                secret_key(secret)
            except ValueError as exc:
                source.fail("secret", str(exc))
        if not secret:
            warnings.append(_disabled(source, "secret", f"source {source_id!r}"))
        for key in ("public_url", "legacy_signatures"):
            if source.has(key) and kind != "hubspot":
                source.fail(key, f"only a hubspot source has {key} (this one is {kind})")
        public_url = source.url("public_url").rstrip("/")
        sources.append(
            InboundSource(
                id=source_id,
                kind=kind,
                secret=secret,
                enabled=bool(secret),
                public_url=public_url,
                legacy_signatures=source.boolean("legacy_signatures", False),
            )
        )
    return tuple(sources)


def _disabled(fields: Fields, missing: str, what: str) -> PlaybookWarning:
    mark = (fields.get(missing) or fields.map).mark
    return PlaybookWarning(
        mark.file, mark.line, fields.at(missing), f"{what} is disabled: its {missing} is empty"
    )
