"""The `channels` section: disabled channels, templates validated with file/line errors,
injection attempts refused before any send."""

from __future__ import annotations

import pytest

from leadloop.channels.config import parse_channels
from leadloop.channels.email import Envelope, compose, decorate_html, rewrite_links
from leadloop.channels.fields import SCHEMA
from leadloop.errors import PlaybookError
from leadloop.personalization.templates import RenderedEmail
from leadloop.playbook.load import parse_playbook


def section(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_channels(parse_playbook(text, "pb.yaml", env or {}).sections.get("channels"))


FULL = """\
version: 1
channels:
  public_url: ${LEADLOOP_PUBLIC_URL:-}
  email:
    smtp_url: ${LEADLOOP_SMTP_URL:-}
    from: ${LEADLOOP_EMAIL_FROM:-}
  whatsapp:
    api_base: ${LEADLOOP_WHATSAPP_API_BASE:-}
    token: ${LEADLOOP_WHATSAPP_TOKEN:-}
    phone_number_id: ${LEADLOOP_WHATSAPP_PHONE_NUMBER_ID:-}
  sms:
    account_sid: ${LEADLOOP_TWILIO_ACCOUNT_SID:-}
    auth_token: ${LEADLOOP_TWILIO_AUTH_TOKEN:-}
    from: ${LEADLOOP_TWILIO_FROM:-}
"""


def test_missing_settings_disable_with_warnings_and_real_hosts_by_default() -> None:
    config = section(FULL)
    assert set(config.disabled) == {"email", "whatsapp", "instagram", "sms"}
    assert "smtp_url" in config.disabled["email"]
    assert config.whatsapp.api_base == "https://graph.facebook.com"
    assert config.sms.api_base == "https://api.twilio.com"
    assert any("whatsapp is disabled" in w.message for w in config.warnings)
    env = {
        "LEADLOOP_PUBLIC_URL": "https://t.acme.test",
        "LEADLOOP_SMTP_URL": "smtps://u:p@smtp.acme.test",
        "LEADLOOP_EMAIL_FROM": "news@acme.test",
        "LEADLOOP_WHATSAPP_TOKEN": "t",
        "LEADLOOP_WHATSAPP_PHONE_NUMBER_ID": "1",
    }
    on = section(FULL, env)
    assert on.enabled_channels() == {"email", "whatsapp"}


@pytest.mark.parametrize(
    "body, message",
    [
        ("{{ ''.__class__ }}", "refused: access to '__class__'"),
        ("{{ traits.__class__.__mro__ }}", "refused"),
        ("{% for i in range(10**6) %}x{% endfor %}", "range() of more than"),
        ("{{ 'x' * 10**9 }}", "repetition over"),
        ("{{ nope }}", "unknown variable 'nope'"),
        ("{% include 'other' %}", "cannot extend or include"),
        ("{{ x", "unexpected end of template"),
    ],
)
def test_template_attacks_and_mistakes_fail_validation(body: str, message: str) -> None:
    text = f'version: 1\nchannels:\n  templates:\n    sms:\n      bad:\n        text: "{body}"\n'
    with pytest.raises(PlaybookError) as caught:
        section(text)
    assert caught.value.file == "pb.yaml"
    assert caught.value.line == 6
    assert caught.value.field == "channels.templates.sms.bad.text"
    assert message in caught.value.message


def test_an_empty_section_disables_every_channel() -> None:
    for text in ("version: 1\nchannels: []\n", "version: 1\nchannels:\n", "version: 1\n"):
        assert section(text).enabled_channels() == frozenset()


def test_unknown_keys_and_bad_values_name_the_line() -> None:
    with pytest.raises(PlaybookError) as caught:
        section("version: 1\nchannels:\n  email:\n    smtp: x\n")
    assert (caught.value.line, caught.value.field) == (4, "channels.email.smtp")
    with pytest.raises(PlaybookError) as caught:
        section("version: 1\nchannels:\n  email:\n    smtp_url: http://x\n")
    assert "smtp://" in caught.value.message
    with pytest.raises(PlaybookError):
        section("version: 1\nchannels:\n  templates:\n    fax:\n      a: {text: hi}\n")


def test_every_schema_key_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "channels.md").read_text()
    for required, optional in SCHEMA.values():
        for key in required | optional:
            assert f"`{key}`" in doc, key


def test_link_rewriting_and_preheader_escaping() -> None:
    markup = (
        '<body><a href="https://a.test/x?y=1&amp;z=2">a</a><a href="mailto:q@a.test">m</a></body>'
    )
    seen: list[str] = []

    def track(url: str) -> str | None:
        seen.append(url)
        return "https://t.test/c/TOKEN&" if url.startswith("https://") else None

    out = rewrite_links(markup, track)
    assert seen == ["https://a.test/x?y=1&z=2", "mailto:q@a.test"]
    assert 'href="https://t.test/c/TOKEN&amp;"' in out and 'href="mailto:q@a.test"' in out
    decorated = decorate_html(out, "<script>x</script>", "https://t.test/o/T.gif")
    assert "&lt;script&gt;x&lt;/script&gt;" in decorated and "<script>" not in decorated
    assert decorated.index("display:none") < decorated.index("href")
    assert decorated.endswith('style="display:block;border:0;width:1px;height:1px"></body>')


def test_only_the_href_attribute_of_a_link_is_rewritten() -> None:
    seen: list[str] = []

    def track(url: str) -> str | None:
        seen.append(url)
        return None if "ours" in url else f"https://t.test/c/{len(seen)}"

    markup = (
        '<a data-href="https://a.test/data" href="https://a.test/real">'
        '<a title="href=https://a.test/title" href=https://a.test/q?x=1&amp;y=2>'
        "<A HREF='https://a.test/upper'><area shape=rect href = https://a.test/map/>"
        '<a href="https://a.test/first" href="https://a.test/second"><a title=">" href=https://ours>'
        '<link href="https://a.test/style.css"><abbr href="https://a.test/abbr"><a name=top>'
    )
    out = rewrite_links(markup, track)
    # What the browser would follow: entities decoded, the first href only, no other attribute.
    assert seen == [
        "https://a.test/real",
        "https://a.test/q?x=1&y=2",
        "https://a.test/upper",
        "https://a.test/map/",
        "https://a.test/first",
        "https://ours",
    ]
    assert out == (
        '<a data-href="https://a.test/data" href="https://t.test/c/1">'
        '<a title="href=https://a.test/title" href="https://t.test/c/2">'
        "<A HREF='https://t.test/c/3'><area shape=rect href = \"https://t.test/c/4\">"
        '<a href="https://t.test/c/5" href="https://a.test/second"><a title=">" href=https://ours>'
        '<link href="https://a.test/style.css"><abbr href="https://a.test/abbr"><a name=top>'
    )


def test_header_values_carry_no_control_characters() -> None:
    # compose() is the last stop for every header, whatever built the value.
    rendered = RenderedEmail("Hi\x00Ada\x1b\u2028\x85\x7f!", "", "", "Hi")
    envelope = Envelope(
        "Acme <news@acme.test>",
        "ada@example.com",
        "m\x07-1",
        "<m@acme.test>",
        "https://t.test/u\x00",
    )
    head = compose(rendered, envelope, "", 0.0).data.partition(b"\r\n\r\n")[0].decode()
    assert "Subject: Hi Ada    !\r\n" in head
    assert "X-Leadloop-Message-Id: m -1\r\n" in head
    assert "List-Unsubscribe: <https://t.test/u>\r\n" in head
