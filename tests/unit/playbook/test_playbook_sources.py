"""`sources:`: inbound webhook senders, validated with file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from leadloop.errors import PlaybookError
from leadloop.playbook import parse_playbook

GOOD = """\
version: 1
sources:
  - id: crm
    kind: standard
    secret: ${CRM_SECRET:-}
  - id: shop
    kind: stripe
    secret: whsec_test_abc
"""
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_sources_load_with_their_secrets_from_the_environment() -> None:
    playbook = parse_playbook(GOOD, env={"CRM_SECRET": SECRET})
    crm, shop = playbook.sources
    assert (crm.id, crm.kind, crm.secret, crm.enabled) == ("crm", "standard", SECRET, True)
    assert (shop.kind, shop.enabled) == ("stripe", True)
    assert playbook.source("shop") is shop and playbook.source("nope") is None
    assert playbook.warnings == ()
    assert SECRET not in repr(crm)


def test_an_unset_secret_disables_the_source_with_a_warning() -> None:
    playbook = parse_playbook(GOOD, env={})
    assert not playbook.source("crm").enabled  # type: ignore[union-attr]
    (warning,) = playbook.warnings
    assert (warning.line, warning.field) == (5, "sources[0].secret")
    assert "source 'crm' is disabled" in warning.message


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "words"),
    [
        (
            "kind: stripe",
            "kind: salesforce",
            7,
            "sources[1].kind",
            "expected one of standard, stripe, hubspot",
        ),
        (
            "secret: whsec_test_abc",
            "secret: whsec_test_abc\n    public_url: https://x",
            9,
            "sources[1].public_url",
            "only a hubspot source",
        ),
        (
            "secret: whsec_test_abc",
            "secret: whsec_test_abc\n    legacy_signatures: true",
            9,
            "sources[1].legacy_signatures",
            "only a hubspot source",
        ),
        ("whsec_test_abc", "sk_live_abc", 8, "sources[1].secret", "signing secret (whsec_...)"),
        ("id: shop", "id: crm", 6, "sources[1].id", "duplicate source id 'crm'"),
        ("id: shop", "id: my/shop", 6, "sources[1].id", "part of the URL"),
        ("    kind: stripe\n", "", 6, "sources[1].kind", "missing required field"),
        ("kind: stripe", "kind: standard", 8, "sources[1].secret", "base64"),
        ("    secret: whsec_test_abc", "    secret: x\n    url: y", 9, "sources[1].url", "unknown"),
    ],
)
def test_errors_name_file_line_and_field(
    old: str, new: str, line: int, field: str, words: str
) -> None:
    assert old in GOOD
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(GOOD.replace(old, new, 1), file="p.yaml", env={})
    error = caught.value
    assert (error.file, error.line, error.field) == ("p.yaml", line, field), str(error)
    assert words in str(error)


HUBSPOT = """\
version: 1
sources:
  - id: hubspot
    kind: hubspot
    secret: 00000000-1111-2222-3333-444444444444
    public_url: https://hooks.example.com/leadloop/
"""


def test_a_hubspot_source_takes_the_app_client_secret_and_a_public_url() -> None:
    (source,) = parse_playbook(HUBSPOT, env={}).sources
    assert (source.kind, source.enabled) == ("hubspot", True)
    assert source.secret == "00000000-1111-2222-3333-444444444444"  # not a whsec_ secret
    assert source.public_url == "https://hooks.example.com/leadloop"  # no trailing slash
    assert source.legacy_signatures is False


def test_legacy_hubspot_signatures_are_an_explicit_opt_in() -> None:
    text = HUBSPOT + "    legacy_signatures: true\n"
    assert parse_playbook(text, env={}).sources[0].legacy_signatures is True


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("https://hooks.example.com/leadloop/", "hooks.example.com", "public_url", "http://"),
        (
            "leadloop/\n",
            "leadloop/\n    legacy_signatures: yes please\n",
            "legacy_signatures",
            "true",
        ),
    ],
)
def test_hubspot_option_errors(old: str, new: str, field: str, words: str) -> None:
    assert old in HUBSPOT
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(HUBSPOT.replace(old, new, 1), file="p.yaml", env={})
    assert caught.value.field == f"sources[0].{field}", str(caught.value)
    assert words in str(caught.value)


TRACKING_DOC = (Path(__file__).parents[3] / "docs" / "tracking.md").read_text(encoding="utf-8")
YAML_BLOCKS = re.findall(r"^```yaml\n(.*?)^```", TRACKING_DOC, re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("block", YAML_BLOCKS)
def test_the_tracking_docs_yaml_examples_are_valid_playbooks(block: str) -> None:
    assert len(YAML_BLOCKS) >= 2  # the sources and the HubSpot Deal Won examples
    parse_playbook("version: 1\n" + block, file="docs/tracking.md", env={})
