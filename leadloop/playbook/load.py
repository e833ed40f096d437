"""Load a playbook from one YAML file or a folder of them, validated, with file/line errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from leadloop.errors import PlaybookError
from leadloop.playbook.diff import diff_playbooks, digest_of, playbook_digest
from leadloop.playbook.fields import Fields, fail
from leadloop.playbook.model import Playbook, PlaybookWarning, WebhookEndpoint
from leadloop.playbook.nodes import Map, Node, Scalar, Seq, merge, parse_file, parse_text, to_raw
from leadloop.playbook.scoring import parse_scoring

__all__ = ["diff_playbooks", "load_playbook", "parse_playbook", "playbook_digest"]

# Sections other stages validate; here we only check their shape.
OTHER_SECTIONS = ("journeys", "conversions", "channels")


def playbook_files(path: Path) -> list[Path]:
    """The file itself, or a folder's `*.yaml` / `*.yml` files in name order."""
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()),
            key=lambda p: p.name,
        )
        if not files:
            raise PlaybookError(str(path), None, "", "folder has no *.yaml files")
        return files
    if not path.exists():
        raise PlaybookError(str(path), None, "", "no such file or folder")
    return [path]


def load_playbook(path: str | Path, env: Mapping[str, str] | None = None) -> Playbook:
    """Parse, merge and validate; raises `PlaybookError` for the first problem found.

    `env` defaults to the process environment; `${NAME}` needs NAME set, `${NAME:-}` does not.
    """
    files = playbook_files(Path(path))
    environment = os.environ if env is None else env
    root: Node | None = None
    for file in files:
        tree = parse_file(file, environment)
        if not isinstance(tree, Map):
            fail(tree, "", "a playbook is a mapping of sections (version, scoring, ...)")
        root = tree if root is None else merge(root, tree)
    assert root is not None
    return _build(root, tuple(str(file) for file in files))


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
        url, secret = hook.text("url", ""), hook.text("secret", "")
        if url and not url.startswith(("http://", "https://")):
            hook.fail("url", "expected an http:// or https:// URL")
        if secret and not secret.startswith("whsec_"):
            # Standard Webhooks secrets are `whsec_` + base64; anything else cannot sign.
            hook.fail("secret", "expected a Standard Webhooks secret (whsec_...)")
        enabled = bool(url and secret)
        if not enabled:
            missing = "url" if not url else "secret"
            mark = (hook.get(missing) or node).mark
            warnings.append(
                PlaybookWarning(
                    mark.file,
                    mark.line,
                    hook.at(missing),
                    f"webhook {hook_id!r} is disabled: its {missing} is empty",
                )
            )
        hooks.append(WebhookEndpoint(id=hook_id, url=url, secret=secret, enabled=enabled))
    return tuple(hooks)
