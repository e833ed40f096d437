"""Invalid playbooks fail with the file, the 1-based line and the dotted field at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.errors import PlaybookError
from leadloop.playbook import load_playbook

GOOD = """\
version: 1
webhooks:
  - id: sales
    url: ${HOOK_URL}
    secret: whsec_abc
scoring:
  models:
    - id: lead
      fit:
        - id: title
          field: title
          op: matches
          value: 'VP|Director'
          points: 15
      engagement:
        - id: home
          type: page
          where:
            - {field: page.path, op: equals, value: /}
          points: 2
      stages:
        - name: subscriber
        - name: MQL
          at: 50
          actions: [{webhook: sales}]
"""
ENV = {"HOOK_URL": "https://hooks.test/in"}


def broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in GOOD
    path = tmp_path / "playbook.yaml"
    path.write_text(GOOD.replace(old, new, 1), encoding="utf-8")
    return path


def test_the_good_playbook_loads(tmp_path: Path) -> None:
    playbook = load_playbook(broken(tmp_path, "version: 1", "version: 1"), env=ENV)
    assert playbook.webhooks[0].url == "https://hooks.test/in"
    assert playbook.warnings == ()


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        ("op: matches", "op: regex", 12, "scoring.models[0].fit[0].op", "unknown operator 'regex'"),
        ("'VP|Director'", "'VP|(Director'", 13, "scoring.models[0].fit[0].value", "bad regex"),
        ("          points: 15\n", "", 10, "scoring.models[0].fit[0].points", "missing required"),
        ("      stages:\n", "      stages:\n        - name: [x\n", 23, "", "YAML syntax error"),
        (
            "          points: 2",
            "          pionts: 2",
            20,
            "scoring.models[0].engagement[0].pionts",
            "unknown key",
        ),
        (
            "points: 2",
            "points: two",
            20,
            "scoring.models[0].engagement[0].points",
            "expected a number",
        ),
        (
            "op: equals",
            "op: startswith",
            19,
            "scoring.models[0].engagement[0].where[0].op",
            "unknown operator",
        ),
        ("at: 50", "at: fifty", 24, "scoring.models[0].stages[1].at", "expected a number"),
        # YAML's `.inf` and `.nan` are floats, and neither is a score, threshold or comparison.
        (
            "points: 2",
            "points: .inf",
            20,
            "scoring.models[0].engagement[0].points",
            "expected a finite number",
        ),
        ("at: 50", "at: .nan", 24, "scoring.models[0].stages[1].at", "expected a finite number"),
        (
            "field: title\n          op: matches\n          value: 'VP|Director'",
            "field: employees\n          op: gte\n          value: -.inf",
            13,
            "scoring.models[0].fit[0].value",
            "needs a finite number",
        ),
        (
            "{webhook: sales}",
            "{webhook: crm}",
            25,
            "scoring.models[0].stages[1].actions[0].webhook",
            "no webhook 'crm'",
        ),
        (
            "type: page",
            "type: click",
            17,
            "scoring.models[0].engagement[0].type",
            "unknown event type",
        ),
        (
            "- id: home",
            "- id: title",
            16,
            "scoring.models[0].engagement[0].id",
            "duplicate rule id",
        ),
        ("version: 1", "version: 1\nversion: 2", 2, "version", "duplicate key"),
        # `matches` runs on values the sender chooses: shapes that backtrack for minutes are
        # refused (the worst that is left is bounded by `scoring.model.MATCH_CHARS`).
        ("'VP|Director'", "'(a+)+$'", 13, "scoring.models[0].fit[0].value", "repeat inside"),
        ("'VP|Director'", "'(a|ab)*c'", 13, "scoring.models[0].fit[0].value", "alternation"),
        ("'VP|Director'", "'a.*b.*c.*d'", 13, "scoring.models[0].fit[0].value", "long repeats"),
        # PostgreSQL `TEXT` cannot hold U+0000, and names are printed one per line.
        ("id: lead", 'id: "le\\0ad"', 8, "scoring.models[0].id", "U+0000"),
        ("id: lead", "id: 'le\x00ad'", 8, "", "U+0000"),
        ("id: lead", 'id: "le\\nad"', 8, "scoring.models[0].id", "control characters"),
        ("version: 1\n", "", 1, "version", "missing required"),
        # YAML that parses but whose values cannot be built, and numbers past a float's range
        # (each number check raised OverflowError).
        ("points: 15", "points: " + "9" * 400, 14, "scoring.models[0].fit[0].points", "too large"),
        ("points: 15", "points: " + "9" * 5000, 14, "scoring.models[0].fit[0].points", "4300"),
        ("points: 15", "points: !!int x", 14, "scoring.models[0].fit[0].points", "invalid"),
        ("version: 1", "version: 2024-13-45", 1, "version", "month must be in 1..12"),
        ("version: 1", "version: !secret 1", 1, "version", "constructor for the tag"),
        ("id: lead", "id: lead\n      !foo x: 1", 9, "scoring.models[0]", "constructor"),
        # A window of no length holds no award, so the cap never held anything back.
        (
            "points: 2",
            "points: 2\n          cap: {points: 10, per: 0s}",
            21,
            "scoring.models[0].engagement[0].cap.per",
            "longer than 0",
        ),
        # `\d` also matches other scripts' digits: "٣h" was 3 hours, "３d" 3 days.
        (
            "points: 2",
            "points: 2\n          cap: {points: 10, per: \u0663h}",
            21,
            "scoring.models[0].engagement[0].cap.per",
            "expected a duration",
        ),
        (
            "      stages:\n",
            "      session: {max_points: 10, timeout: \uff13d}\n      stages:\n",
            21,
            "scoring.models[0].session.timeout",
            "expected a duration",
        ),
        # The next step is due at `last_activity + (steps + 1) * every`: so small a window rounded
        # to the instant of the step firing, whose timer (the same id) was dropped as a duplicate.
        (
            "      stages:\n",
            "      decay: {step: {points: 5, every: 0.000001s}}\n      stages:\n",
            21,
            "scoring.models[0].decay.step.every",
            "at least 1 minute",
        ),
        (
            "      stages:\n",
            "      decay: {step: {points: 5, every: 59}}\n      stages:\n",
            21,
            "scoring.models[0].decay.step.every",
            "at least 1 minute",
        ),
        # It read as unset, so sessions silently lasted the default 30 minutes.
        (
            "      stages:\n",
            "      session: {max_points: 10, timeout: 0}\n      stages:\n",
            21,
            "scoring.models[0].session.timeout",
            "longer than 0",
        ),
        # Unquoted, a date is a `date`, which no event value (JSON) equals: it never matched.
        (
            "value: /}",
            "value: 2024-06-01}",
            19,
            "scoring.models[0].engagement[0].where[0].value",
            "quote a date",
        ),
    ],
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, words: str
) -> None:
    path = broken(tmp_path, old, new)
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, env=ENV)
    error = caught.value
    assert (error.file, error.line, error.field) == (str(path), line, field), str(error)
    assert words in error.message
    assert f"{path}:{line}" in str(error)


def test_an_unset_variable_without_default_is_an_error(tmp_path: Path) -> None:
    path = broken(tmp_path, "version: 1", "version: 1")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, env={})
    error = caught.value
    assert (error.line, error.field) == (4, "webhooks[0].url")
    assert "HOOK_URL is not set" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.test/in\nX-Injected: 1",
        "https://hooks.test/in ",
        "https://hooks.test/\x7fin",
        "https:///in",
        "mailto:sales@example.com",
    ],
)
def test_a_webhook_url_from_the_environment_is_checked_where_it_is_written(
    tmp_path: Path, url: str
) -> None:
    """A URL set through `${ENV}` with a line break, a space or a control character would
    otherwise be accepted and fail only at the first delivery."""
    path = broken(tmp_path, "version: 1", "version: 1")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, env={"HOOK_URL": url})
    error = caught.value
    assert (error.line, error.field) == (4, "webhooks[0].url")
    assert "expected an http:// or https:// URL" in error.message


def test_a_folder_names_the_file_at_fault(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\nworkspace: w\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text(
        "scoring:\n  models:\n    - id: m\n      stages: [{name: a, at: 5}, {name: b, at: 3}]\n",
        encoding="utf-8",
    )
    with pytest.raises(PlaybookError) as caught:
        load_playbook(tmp_path)
    error = caught.value
    assert (error.file, error.line, error.field) == (
        str(tmp_path / "b.yaml"),
        4,
        "scoring.models[0].stages[1].at",
    )


def test_conflicting_scalars_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("version: 2\n", encoding="utf-8")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(tmp_path)
    assert caught.value.file == str(tmp_path / "b.yaml") and caught.value.field == "version"
    assert "a.yaml:1" in caught.value.message


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="no such file"):
        load_playbook(tmp_path / "nope.yaml")


def test_aliases_that_expand_to_billions_of_values_are_refused_quickly(tmp_path: Path) -> None:
    """The "billion laughs": nine levels of nine aliases each would be 387 million values."""
    lines = ["version: 1", 'l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match="expands to more than 100,000 values") as caught:
        load_playbook(path)
    assert caught.value.file == str(path) and caught.value.line is not None


@pytest.mark.parametrize("levels", [65, 5000])
def test_nesting_deeper_than_a_playbook_needs_is_refused(tmp_path: Path, levels: int) -> None:
    """65 levels fail in our tree builder, 5,000 in PyYAML's recursive composer: the same error."""
    path = tmp_path / "deep.yaml"
    path.write_text(f"version: 1\nx: {'[' * levels}{']' * levels}\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match="nested deeper than 64 levels") as caught:
        load_playbook(path)
    assert caught.value.file == str(path)


def test_aliases_within_the_limits_still_work(tmp_path: Path) -> None:
    """Anchors are a fair way to reuse a condition: the bounds leave them alone."""
    reused = GOOD.replace(
        "            - {field: page.path, op: equals, value: /}",
        "            - &home {field: page.path, op: equals, value: /}\n            - *home",
    )
    path = tmp_path / "playbook.yaml"
    path.write_text(reused, encoding="utf-8")
    playbook = load_playbook(path, env=ENV)
    assert len(playbook.models[0].engagement[0].when.where) == 2


def test_a_merge_key_is_overridden_by_the_mappings_own_keys(tmp_path: Path) -> None:
    """`<<: *name` then a key of its own is how merge keys are used, not a duplicate key."""
    merged = GOOD.replace(
        "            - {field: page.path, op: equals, value: /}",
        "            - &home {field: page.path, op: equals, value: /}\n"
        "            - {<<: *home, value: /pricing}",
    )
    path = tmp_path / "playbook.yaml"
    path.write_text(merged, encoding="utf-8")
    where = load_playbook(path, env=ENV).models[0].engagement[0].when.where
    assert [(c.field, c.test.value) for c in where] == [
        ("page.path", "/"),
        ("page.path", "/pricing"),
    ]
    path.write_text(merged.replace("value: /pricing}", "value: /a, value: /b}"), encoding="utf-8")
    with pytest.raises(PlaybookError, match="duplicate key"):
        load_playbook(path, env=ENV)


def test_a_decay_window_of_a_minute_is_the_shortest_taken(tmp_path: Path) -> None:
    new = "      decay: {step: {points: 5, every: 1m}}\n      stages:\n"
    playbook = load_playbook(broken(tmp_path, "      stages:\n", new), env=ENV)
    step = playbook.models[0].decay.step
    assert step is not None and step.every == 60.0
