"""Typed, located reads of playbook mappings; every failure is a `PlaybookError` with file and line.

`SCHEMA` is the single list of keys each kind of mapping accepts. The validator rejects anything
else, and `docs/playbook.md` must document every key listed here (a test checks it).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from leadloop.errors import PlaybookError
from leadloop.playbook.nodes import Map, Node, Scalar, Seq, join

# section -> (required keys, optional keys)
SCHEMA: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "playbook": (
        frozenset({"version"}),
        frozenset(
            {"workspace", "scoring", "journeys", "conversions", "channels", "webhooks", "sources"}
        ),
    ),
    "webhooks[]": (frozenset({"id", "url", "secret"}), frozenset()),
    "sources[]": (
        frozenset({"id", "kind", "secret"}),
        frozenset({"public_url", "legacy_signatures"}),
    ),
    "scoring": (frozenset({"models"}), frozenset()),
    "scoring.models[]": (
        frozenset({"id", "stages"}),
        frozenset(
            {"name", "fit", "engagement", "stage_rules", "decay", "cap", "session", "predict"}
        ),
    ),
    "predict": (
        frozenset({"outcome", "features"}),
        frozenset({"min_conversions", "post_outcome"}),
    ),
    "outcome": (frozenset(), frozenset({"type", "event", "where"})),
    "features[]": (
        frozenset(),
        frozenset({"id", "trait", "source", "kind", "count", "within", "score"}),
    ),
    "count": (frozenset(), frozenset({"type", "event", "where"})),
    "fit[]": (
        frozenset({"id", "field", "op", "points"}),
        frozenset({"value", "ignore_case", "source"}),
    ),
    "engagement[]": (
        frozenset({"id", "points"}),
        frozenset({"type", "event", "where", "once", "cap", "half_life"}),
    ),
    "where[]": (frozenset({"field", "op"}), frozenset({"value", "ignore_case"})),
    "cap": (frozenset({"points"}), frozenset({"per"})),
    "session": (frozenset({"max_points"}), frozenset({"timeout"})),
    "decay": (frozenset(), frozenset({"step", "floor", "half_life", "activity"})),
    "decay.step": (frozenset({"points", "every"}), frozenset()),
    "stages[]": (frozenset({"name"}), frozenset({"at", "actions"})),
    "actions[]": (frozenset(), frozenset({"emit", "webhook"})),
    "stage_rules[]": (
        frozenset({"id"}),
        frozenset({"type", "event", "where", "stage", "stage_field"}),
    ),
}

# ASCII: `\d` also matches other scripts' digits, and "٣h" read as 3 hours.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.ASCII)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def fail(node: Node, field: str, message: str) -> NoReturn:
    raise PlaybookError(node.mark.file, node.mark.line, field, message)


def type_name(node: Node) -> str:
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    return type(node.value).__name__ if node.value is not None else "null"


def items(node: Node, path: str) -> list[tuple[Node, str]]:
    """A list's items with their paths; a missing (null) list reads as empty."""
    if isinstance(node, Scalar) and node.value is None:
        return []
    if not isinstance(node, Seq):
        fail(node, path, f"expected a list, got {type_name(node)}")
    return [
        (item, f"{path}[{index}]") for item, index in zip(node.items, node.indices, strict=True)
    ]


class Fields:
    """One mapping of a known section, checked for unknown and missing keys on construction.

    A stage that owns a playbook section subclasses this with its own `schema`."""

    schema: ClassVar[dict[str, tuple[frozenset[str], frozenset[str]]]] = SCHEMA

    def __init__(self, node: Node, path: str, section: str) -> None:
        if not isinstance(node, Map):
            fail(node, path, f"expected a mapping, got {type_name(node)}")
        self.map = node
        self.path = path
        required, optional = self.schema[section]
        allowed = required | optional
        for key, mark in node.key_marks.items():
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                raise PlaybookError(
                    mark.file, mark.line, join(path, key), f"unknown key (expected: {expected})"
                )
        for key in sorted(required - node.values.keys()):
            fail(node, join(path, key), "missing required field")

    def at(self, key: str) -> str:
        return join(self.path, key)

    def get(self, key: str) -> Node | None:
        return self.map.values.get(key)

    def has(self, key: str) -> bool:
        return key in self.map.values

    def fail(self, key: str, message: str) -> NoReturn:
        node = self.map.values.get(key, self.map)
        fail(node, self.at(key), message)

    def value(self, key: str) -> Any:
        node = self.get(key)
        if node is None:
            return None
        if not isinstance(node, Scalar):
            self.fail(key, f"expected a single value, got {type_name(node)}")
        return node.value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.value(key)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {type_name(self.get(key) or self.map)}")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.value(key) is None else self.text(key)

    def name(self, key: str) -> str:
        """An identifier-like string: non-empty, no surrounding spaces, one line of visible
        text (it is printed in lists, logs and `explain` lines)."""
        value = self.text(key)
        if not value or value != value.strip():
            self.fail(key, "must be non-empty without surrounding spaces")
        if not value.isprintable():
            self.fail(key, "control characters (such as a line break) are not allowed")
        return value

    def url(self, key: str, default: str = "") -> str:
        """An http(s) URL, or `default` when absent; empty means not set."""
        value = self.text(key, default)
        problem = url_problem(value) if value else None
        if problem is not None:
            self.fail(key, problem)
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self.value(key)
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"expected a number, got {type_name(self.get(key) or self.map)}")
        if not math.isfinite(value):
            # YAML has `.inf` and `.nan`: neither is a score, a threshold or a weight.
            self.fail(key, f"expected a finite number, got {value!r}")
        return float(value)

    def optional_number(self, key: str) -> float | None:
        return None if self.value(key) is None else self.number(key)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value

    def duration(self, key: str) -> float:
        """Seconds, written as a number of seconds or `90s`, `30m`, `12h`, `30d`, `2w`."""
        value = self.value(key)
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (found := _DURATION.match(value)):
            seconds = float(found.group(1)) * _UNITS[found.group(2)]
        if seconds is None or not 0 <= seconds < math.inf:
            self.fail(key, f"expected a duration like 30d, 12h, 15m or seconds, got {value!r}")
        return seconds

    def optional_duration(self, key: str) -> float | None:
        return None if self.value(key) is None else self.duration(key)

    def texts(self, key: str) -> tuple[str, ...]:
        """One string or a list of strings."""
        node = self.get(key)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return ()
        if isinstance(node, Scalar):
            return (self.text(key),)
        found: list[str] = []
        for item, path in items(node, self.at(key)):
            if not isinstance(item, Scalar) or not isinstance(item.value, str) or not item.value:
                fail(item, path, "expected a non-empty string")
            found.append(item.value)
        return tuple(found)

    def items(self, key: str) -> list[tuple[Node, str]]:
        node = self.get(key)
        return [] if node is None else items(node, self.at(key))

    def child(self, key: str, section: str) -> Fields | None:
        node = self.get(key)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return None
        return Fields(node, self.at(key), section)


def url_problem(value: str) -> str | None:
    """Why `value` is not an http(s) URL the engine can call (None: it is). Spaces and control
    characters are refused here: set through `${ENV}` they would otherwise fail only at the
    first delivery, as a request the HTTP client cannot even build."""
    if any(c.isspace() or not c.isprintable() for c in value):
        return "expected an http:// or https:// URL without spaces or control characters"
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # an unclosed `[` of an IPv6 host: urlsplit raises, not returns
        return "expected an http:// or https:// URL (it does not parse)"
    if parts.scheme not in ("http", "https") or not host:
        return "expected an http:// or https:// URL"
    return None
