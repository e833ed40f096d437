"""Playbook versions: a stable digest, and the changes between two playbooks in words."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from leadloop.playbook.nodes import env_names

if TYPE_CHECKING:
    from leadloop.playbook.model import Playbook

# Values under these keys are shown as *** in diffs, in case a secret was written inline.
_SECRET_WORDS = ("secret", "token", "password", "key")


def digest_of(raw: Any) -> str:
    """sha256 of the canonical JSON of the text before `${ENV}` substitution: the same playbook
    gives the same digest on every machine, whatever its key order, comments or secrets."""
    text = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def digest_with_values(raw: Any, value: Any) -> str:
    """The digest of a part of the playbook that means what its `${VAR}`s hold (a scoring
    model's rules, a predictive model's section): `raw` and `value`, that part before and
    after substitution. A variable's new value is a new digest, so what was built with the
    old one (scores, a trained model) is stale; only this hash of the values is kept. A part
    with no variable keeps the digest of its text, which it had before values counted: an
    upgrade makes nothing stale."""
    if not env_names(raw):
        return digest_of(raw)
    return digest_of({"raw": raw, "value": value})


def playbook_digest(playbook: Playbook) -> str:
    return digest_of(playbook.raw)


def diff_playbooks(old: Playbook, new: Playbook) -> list[str]:
    """One line per change, e.g. `~ scoring.models[lead].engagement[pricing].points: 10 -> 15`.

    List items that have an `id` (or a `name`) are matched by it, so inserting a rule does not
    show every later rule as changed.
    """
    lines: list[str] = []
    _diff(old.raw, new.raw, "", lines)
    return lines


def _secret(key: str) -> bool:
    return any(word in key.lower() for word in _SECRET_WORDS)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "***" if _secret(str(key)) and isinstance(item, str) else _mask(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value


def _show(path: str, value: Any) -> str:
    if _secret(path.rsplit(".", 1)[-1]) and isinstance(value, str):
        return "***"
    return json.dumps(_mask(value), ensure_ascii=False, sort_keys=True, default=str)


def _label(item: Any) -> str | None:
    if isinstance(item, dict):
        for key in ("id", "name"):
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
    return None


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    labels = [_label(item) for item in items]
    if None in labels or len(set(labels)) != len(labels):
        return None
    return {str(label): item for label, item in zip(labels, items, strict=True)}


def _diff(old: Any, new: Any, path: str, lines: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys(), key=str):
            child = f"{path}.{key}" if path else str(key)
            if key not in new:
                lines.append(f"- {child}")
            elif key not in old:
                lines.append(f"+ {child}: {_show(child, new[key])}")
            else:
                _diff(old[key], new[key], child, lines)
        return
    if isinstance(old, list) and isinstance(new, list):
        old_keyed, new_keyed = _keyed(old), _keyed(new)
        if old_keyed is not None and new_keyed is not None:
            for label in [*old_keyed, *(k for k in new_keyed if k not in old_keyed)]:
                child = f"{path}[{label}]"
                if label not in new_keyed:
                    lines.append(f"- {child}")
                elif label not in old_keyed:
                    lines.append(f"+ {child}")
                else:
                    _diff(old_keyed[label], new_keyed[label], child, lines)
            kept_old = [label for label in old_keyed if label in new_keyed]
            kept_new = [label for label in new_keyed if label in old_keyed]
            if kept_old != kept_new:
                lines.append(f"~ {path}: order changed")
            return
        for index in range(max(len(old), len(new))):
            child = f"{path}[{index}]"
            if index >= len(new):
                lines.append(f"- {child}")
            elif index >= len(old):
                lines.append(f"+ {child}: {_show(child, new[index])}")
            else:
                _diff(old[index], new[index], child, lines)
        return
    if old != new or type(old) is not type(new):
        lines.append(f"~ {path}: {_show(path, old)} -> {_show(path, new)}")
