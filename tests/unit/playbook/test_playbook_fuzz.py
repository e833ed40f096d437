"""The example playbooks, mutated at random (a value replaced by a hostile one, a key dropped or
misspelt, a list emptied), as `leadloop playbook validate` reads them: each is accepted or
refused with a `PlaybookError` naming file, line and field, never a traceback.

The examples cover every section (sources, scoring with decay and predict, journeys, channels,
conversions), so a mutation lands in each one's parser. Drawn deterministically, as
`tests/integration/test_api_fuzz.py` (same environment variables to draw more).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from leadloop.errors import PlaybookError
from leadloop.playbook import store

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# The whole playbooks (examples/journeys.yaml is a fragment of playbook.yaml).
PLAYBOOKS = {
    name: yaml.safe_load((EXAMPLES / name).read_text())
    for name in ("playbook.yaml", "x-education.yaml")
}
FUZZ = settings(
    max_examples=int(os.environ.get("LEADLOOP_FUZZ_EXAMPLES", "300")),
    derandomize=os.environ.get("LEADLOOP_FUZZ_RANDOM") != "1",
)
HOSTILE = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            0,
            -1,
            2**64,
            10**400,
            1e308,
            float("inf"),
            float("nan"),
            "",
            " ",
            "\x00",
            "(",
            "[a-",
            "a{99999999999}",
            "9" * 400,
            "999999999999999d",
            "0s",
            "-5m",
            "٣d",
            "25:00",
            "Mars/Olympus",
            "${UNSET_LEADLOOP_VARIABLE}",
            "${}",
            "http://",
            "javascript:alert(1)",
            "{{ ''.__class__ }}",
            "{% for %}",
            "x" * 5000,
            [],
            {},
            [None],
            {"": None},
        ]
    ),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the tree a mutation can land."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_paths(value, (*prefix, i)))
    return found


def _mutate(tree: Any, path: tuple[Any, ...], how: str, value: Any) -> Any:
    parent = tree
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "drop":
        del parent[last]
    elif how == "rename" and isinstance(parent, dict):
        parent[f"{last}x"] = parent.pop(last)
    elif how == "empty" and isinstance(parent[last], list | dict):
        parent[last] = type(parent[last])()
    return tree


def test_the_examples_build_as_they_are() -> None:
    """Mutations of a playbook that did not build would all stop at its first error."""
    for name, tree in PLAYBOOKS.items():
        store.build({name: yaml.safe_dump(tree, allow_unicode=True)}, env={})


@FUZZ
@given(st.data())
def test_a_mutated_playbook_is_accepted_or_refused_with_file_line_and_field(
    data: st.DataObject,
) -> None:
    name = data.draw(st.sampled_from(sorted(PLAYBOOKS)))
    tree = yaml.safe_load(yaml.safe_dump(PLAYBOOKS[name]))  # a fresh copy to mutate
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(tree)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        how = data.draw(st.sampled_from(["replace", "replace", "drop", "rename", "empty"]))
        tree = _mutate(tree, path, how, data.draw(HOSTILE))
    text = yaml.safe_dump(tree, allow_unicode=True)
    try:
        store.build({name: text}, env={})
    except PlaybookError as error:
        assert error.file == name, error
        assert error.message, error
        assert "Traceback" not in str(error)
