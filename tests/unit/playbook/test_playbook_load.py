"""Loading: folders, `${ENV}`, digests that ignore formatting and secrets, readable diffs."""

from __future__ import annotations

from pathlib import Path

from leadloop.playbook import diff_playbooks, load_playbook, parse_playbook, playbook_digest

EXAMPLE = Path(__file__).parents[3] / "examples" / "playbook.yaml"

MODEL = """\
scoring:
  models:
    - id: lead
      engagement:
        - {id: home, type: page, points: 2}
        - {id: pricing, type: page, points: 10}
      stages: [{name: subscriber}, {name: MQL, at: 50}]
"""


def test_the_example_playbook_has_every_top_level_section() -> None:
    playbook = load_playbook(EXAMPLE, env={})
    assert set(playbook.raw) == {
        "version",
        "workspace",
        "webhooks",
        "sources",
        "scoring",
        "journeys",
        "conversions",
        "channels",
    }
    assert [model.id for model in playbook.models] == ["lead"]
    assert playbook.digest == playbook_digest(playbook)


def test_a_folder_is_merged_in_name_order(tmp_path: Path) -> None:
    (tmp_path / "10-base.yaml").write_text("version: 1\nworkspace: acme\n" + MODEL, "utf-8")
    (tmp_path / "20-more.yml").write_text(
        "scoring:\n  models:\n    - id: product_b\n      stages: [{name: new}]\n", "utf-8"
    )
    (tmp_path / "notes.txt").write_text("ignored", "utf-8")
    playbook = load_playbook(tmp_path)
    assert playbook.workspace == "acme"
    assert [model.id for model in playbook.models] == ["lead", "product_b"]
    assert playbook.files == (str(tmp_path / "10-base.yaml"), str(tmp_path / "20-more.yml"))


def test_env_substitution_defaults_and_escapes() -> None:
    text = (
        "version: 1\n"
        "webhooks:\n"
        "  - {id: a, url: '${BASE}/a', secret: '${SECRET:-whsec_default}'}\n"
        "channels: {note: '$${NOT_A_VAR}'}\n"
    )
    playbook = parse_playbook(text, env={"BASE": "https://x.test"})
    assert playbook.webhooks[0].url == "https://x.test/a"
    assert playbook.webhooks[0].secret == "whsec_default"
    assert playbook.webhooks[0].enabled
    assert "secret" not in repr(playbook.webhooks[0]).replace("secret=", "")
    channels = playbook.sections["channels"]
    assert channels.values["note"].value == "${NOT_A_VAR}"  # type: ignore[union-attr]


def test_digest_ignores_formatting_comments_and_secret_values() -> None:
    one = parse_playbook(
        "version: 1\n" + MODEL + "webhooks: [{id: a, url: '${U}', secret: '${S}'}]\n",
        env={"U": "https://a.test", "S": "whsec_1"},
    )
    two = parse_playbook(
        "# a comment\nwebhooks:\n  - {secret: '${S}', url: '${U}', id: a}\nversion: 1\n" + MODEL,
        env={"U": "https://b.test", "S": "whsec_2"},
    )
    assert playbook_digest(one) == playbook_digest(two)
    changed = parse_playbook("version: 1\n" + MODEL.replace("points: 10", "points: 15"))
    assert playbook_digest(changed) != playbook_digest(parse_playbook("version: 1\n" + MODEL))


def test_model_version_changes_only_with_its_model() -> None:
    base = parse_playbook("version: 1\n" + MODEL)
    other = parse_playbook("version: 2\njourneys: [{id: x}]\n" + MODEL)
    assert base.models[0].version == other.models[0].version
    edited = parse_playbook("version: 1\n" + MODEL.replace("points: 2", "points: 3"))
    assert edited.models[0].version != base.models[0].version


def test_diff_names_rules_by_id() -> None:
    old = parse_playbook("version: 1\n" + MODEL)
    new_text = (
        MODEL.replace("points: 10}", "points: 15}").replace(
            "        - {id: home, type: page, points: 2}\n", ""
        )
        + "webhooks: [{id: a, url: 'https://a.test', secret: whsec_x}]\n"
    )
    new = parse_playbook(
        "version: 2\n"
        + new_text.replace(
            "      stages:", "        - {id: demo, event: Demo, points: 20}\n      stages:"
        )
    )
    assert diff_playbooks(old, new) == [
        "- scoring.models[lead].engagement[home]",
        "~ scoring.models[lead].engagement[pricing].points: 10 -> 15",
        "+ scoring.models[lead].engagement[demo]",
        "~ version: 1 -> 2",
        '+ webhooks: [{"id": "a", "secret": "***", "url": "https://a.test"}]',
    ]
    assert diff_playbooks(old, old) == []


def test_diff_masks_secrets() -> None:
    old = parse_playbook(
        "version: 1\nwebhooks: [{id: a, url: 'https://a.test', secret: whsec_1}]\n"
    )
    new = parse_playbook(
        "version: 1\nwebhooks: [{id: a, url: 'https://a.test', secret: whsec_2}]\n"
    )
    assert diff_playbooks(old, new) == ["~ webhooks[a].secret: *** -> ***"]
