"""A YAML tree that remembers where every value came from.

PyYAML's composer gives nodes with marks; constructing Python objects throws them away. We keep a
small tree of `Map`/`Seq`/`Scalar` instead, each with its file and 1-based line, so that every
validation error can name the file, line and dotted field. Scalars keep both the value after
`${ENV}` substitution and the text before it: the playbook digest and diff use the latter, so
secrets never reach a hash input or a printed diff, and a secret rotation is not a new version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leadloop.errors import PlaybookError
from leadloop.files import FileTooLarge, read_limited


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Scalar:
    value: Any
    raw: Any
    mark: Mark


@dataclass(frozen=True, slots=True)
class Seq:
    items: tuple[Node, ...]
    indices: tuple[int, ...]
    """Each item's index in its own file: paths in errors point into the file they name."""
    mark: Mark


@dataclass(frozen=True, slots=True)
class Map:
    values: dict[str, Node]
    key_marks: dict[str, Mark]
    mark: Mark


Node = Map | Seq | Scalar

# `$${` escapes a literal `${`.
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def substitute(text: str, env: Mapping[str, str], mark: Mark, field: str) -> str:
    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$${":
            return "${"
        name, has_default, default = found.group(1), found.group(2), found.group(3)
        value = env.get(name)
        if value is not None:
            return value
        if has_default is not None:
            return default or ""
        raise PlaybookError(
            mark.file,
            mark.line,
            field,
            f"environment variable {name} is not set (write ${{{name}:-default}} to allow that)",
        )

    return _ENV.sub(one, text)


def env_placeholders(text: str) -> set[str]:
    """Each `${NAME}` or `${NAME:-default}` in `text` as written (a `$${` escape is none)."""
    return {found.group(0) for found in _ENV.finditer(text) if found.group(1)}


def env_names(raw: Any) -> set[str]:
    """The names of the variables plain data before substitution (`to_raw`) reads."""
    if isinstance(raw, dict):
        return set().union(*(env_names(value) for value in raw.values()))
    if isinstance(raw, list):
        return set().union(*(env_names(item) for item in raw))
    if isinstance(raw, str):
        return {found.group(1) for found in _ENV.finditer(raw) if found.group(1)}
    return set()


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def read_text(path: Path, limit: int) -> str:
    """A playbook file's text; unreadable, more than `limit` bytes (read no further) or not
    UTF-8 (a binary file) is a `PlaybookError`."""
    try:
        return read_limited(path, limit).decode("utf-8")
    except FileTooLarge as error:
        raise PlaybookError(str(path), None, "", f"the playbook is {error}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise PlaybookError(str(path), None, "", f"cannot read: {error}") from error


MAX_VALUES = 100_000
"""Values one file may expand to. YAML aliases let a few lines name billions of values (the
"billion laughs"); a real playbook has hundreds."""
MAX_DEPTH = 64
"""Levels of nesting one file may have (a playbook needs about ten)."""
# Names and values reach PostgreSQL `TEXT` (workspace, model and rule ids, templates), which
# cannot hold U+0000: accepted, such a playbook would fail every event on that backend.
_NUL = "contains U+0000 (NUL), which cannot be stored"


def parse_text(text: str, name: str, env: Mapping[str, str] | None = None) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError as error:  # PyYAML's composer recurses once per level of nesting
        raise PlaybookError(name, None, "", f"nested deeper than {MAX_DEPTH} levels") from error
    except yaml.reader.ReaderError as error:  # a control character such as NUL in the file
        raise PlaybookError(
            name,
            text.count("\n", 0, error.position) + 1,
            "",
            f"YAML syntax error: character U+{error.character:04X} is not allowed",
        ) from error
    except yaml.MarkedYAMLError as error:
        where = error.problem_mark or error.context_mark
        line = where.line + 1 if where is not None else None
        problem = error.problem or error.context or "invalid YAML"
        raise PlaybookError(name, line, "", f"YAML syntax error: {problem}") from error
    except yaml.YAMLError as error:
        raise PlaybookError(name, None, "", f"YAML syntax error: {error}") from error
    if root is None:
        return Map({}, {}, Mark(name, 1))
    builder = _Builder(name, os.environ if env is None else env)
    return builder.build(root, "")


class _Builder:
    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.built = 0
        self.merged: dict[int, int] = {}
        # Only used for its scalar resolution (ints, floats, bools, dates): YAML 1.1 as PyYAML does.
        self.constructor = yaml.constructor.SafeConstructor()

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.file, node.start_mark.line + 1)

    def construct(self, node: yaml.Node, mark: Mark, path: str) -> Any:
        """A key's or scalar's value. YAML that parses can still fail here, which must be a
        located error, not a traceback: an unknown tag (`!foo`, `!!python/...`), an impossible
        date (`2024-13-45`), `!!int abc`, an integer past Python's 4,300-digit conversion limit,
        and one past a float's range, which every number check (`math.isfinite`, `float()`)
        raises `OverflowError` on."""
        try:
            value = self.constructor.construct_object(node)
        except yaml.MarkedYAMLError as error:
            raise PlaybookError(self.file, mark.line, path, str(error.problem)) from error
        except ValueError as error:
            raise PlaybookError(self.file, mark.line, path, f"invalid value: {error}") from error
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                float(value)
            except OverflowError as error:
                raise PlaybookError(self.file, mark.line, path, "number too large") from error
        return value

    def flatten(self, node: yaml.MappingNode, mark: Mark, path: str) -> int:
        """Resolve the mapping's `<<` merge keys; returns how many of its pairs, listed first,
        came from merged mappings. Their keys may repeat (`<<: *defaults` then `template: b`
        overrides the merged `template`), which is no duplicate. Counted once per node: an
        alias visits it again, flattened already."""
        if id(node) not in self.merged:
            own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
            try:
                self.constructor.flatten_mapping(node)
            except yaml.MarkedYAMLError as error:
                raise PlaybookError(self.file, mark.line, path, str(error.problem)) from error
            self.merged[id(node)] = len(node.value) - own
        return self.merged[id(node)]

    def build(self, node: yaml.Node, path: str, depth: int = 0) -> Node:
        mark = self.mark(node)
        self.built += 1
        if self.built > MAX_VALUES:
            raise PlaybookError(
                self.file,
                mark.line,
                path,
                f"the file expands to more than {MAX_VALUES:,} values (YAML aliases repeated "
                "inside each other?)",
            )
        if depth > MAX_DEPTH:
            raise PlaybookError(
                self.file, mark.line, path, f"nested deeper than {MAX_DEPTH} levels"
            )
        if isinstance(node, yaml.MappingNode):
            merged = self.flatten(node, mark, path)
            values: dict[str, Node] = {}
            key_marks: dict[str, Mark] = {}
            from_merge: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key_mark = self.mark(key_node)
                key = self.construct(key_node, key_mark, path)
                if not isinstance(key, str):
                    raise PlaybookError(
                        self.file, key_mark.line, path, f"keys must be strings, got {key!r}"
                    )
                if "\x00" in key:
                    raise PlaybookError(self.file, key_mark.line, path, _NUL)
                if key in values:
                    if index < merged:  # of two merged mappings, the first listed wins
                        continue
                    if key not in from_merge:
                        raise PlaybookError(
                            self.file, key_mark.line, join(path, key), "duplicate key"
                        )
                    from_merge.discard(key)  # the mapping's own key overrides a merged one
                elif index < merged:
                    from_merge.add(key)
                key_marks[key] = key_mark
                values[key] = self.build(value_node, join(path, key), depth + 1)
            return Map(values, key_marks, mark)
        if isinstance(node, yaml.SequenceNode):
            items = tuple(
                self.build(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node.value)
            )
            return Seq(items, tuple(range(len(items))), mark)
        raw = self.construct(node, mark, path)
        value = substitute(raw, self.env, mark, path) if isinstance(raw, str) else raw
        if isinstance(value, str) and "\x00" in value:  # written "\0" in a quoted string
            raise PlaybookError(self.file, mark.line, path, _NUL)
        return Scalar(value, raw, mark)


def merge(into: Node, other: Node, path: str = "") -> Node:
    """Merge a folder's files: mappings union, lists concatenate, equal scalars agree."""
    if isinstance(into, Map) and isinstance(other, Map):
        values = dict(into.values)
        marks = dict(into.key_marks)
        for key, node in other.values.items():
            values[key] = merge(values[key], node, join(path, key)) if key in values else node
            marks.setdefault(key, other.key_marks[key])
        return Map(values, marks, into.mark)
    if isinstance(into, Seq) and isinstance(other, Seq):
        return Seq(into.items + other.items, into.indices + other.indices, into.mark)
    if isinstance(into, Scalar) and isinstance(other, Scalar) and into.raw == other.raw:
        return into
    first = f"{into.mark.file}:{into.mark.line}"
    raise PlaybookError(
        other.mark.file, other.mark.line, path, f"conflicts with the value at {first}"
    )


def to_raw(node: Node) -> Any:
    """Plain data before `${ENV}` substitution (for digests and diffs)."""
    if isinstance(node, Map):
        return {key: to_raw(value) for key, value in node.values.items()}
    if isinstance(node, Seq):
        return [to_raw(item) for item in node.items]
    return node.raw


def to_value(node: Node) -> Any:
    """Plain data after `${ENV}` substitution (for sections parsed by other stages)."""
    if isinstance(node, Map):
        return {key: to_value(value) for key, value in node.values.items()}
    if isinstance(node, Seq):
        return [to_value(item) for item in node.items]
    return node.value
