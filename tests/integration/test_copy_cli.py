"""`leadloop copy variants`: printed lines that validate when pasted into the playbook; an
OpenAI-compatible provider (a local server checking the chat completions request shape) whose
invented figures are refused; bad input refused with a clear error."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from leadloop.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "playbook.yaml"


def run(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as exit:  # argparse refuses malformed values with status 2
        return int(exit.code or 0)


def test_printed_variants_validate_once_pasted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("copy", "variants", str(EXAMPLE), "--template", "guide", "--count", "3") == 0
    out = capsys.readouterr().out
    templates_text, step_text = out.split("# Then send them")
    templates = yaml.safe_load(templates_text)
    assert sorted(templates) == ["guide_2", "guide_3", "guide_4"]
    assert templates["guide_2"]["subject"] == "Five steps to your first automated journey"
    # Everything but the subject is the original's, `${…}`-free here as in the file.
    assert templates["guide_2"]["html"].startswith("<html><body>")
    step = yaml.safe_load(step_text.split("\n", 1)[1])
    assert step["selection"] == "thompson"
    assert [v["template"] for v in step["variants"]] == ["guide", "guide_2", "guide_3", "guide_4"]

    # Paste both into the example playbook: it must still validate, variant set and all.
    playbook = yaml.safe_load(EXAMPLE.read_text())
    playbook["channels"]["templates"]["email"].update(templates)
    journey = playbook["journeys"]["flows"][0]
    send = next(s for s in journey["steps"] if s.get("template") == "guide")
    del send["template"]
    send.update(step)
    pasted = tmp_path / "playbook.yaml"
    pasted.write_text(yaml.safe_dump(playbook, sort_keys=False))
    assert run("playbook", "validate", str(pasted)) == 0, capsys.readouterr().err
    # And a variant the validator would refuse is caught there too: the check is real.
    send["variants"].append({"template": "guide_99"})
    pasted.write_text(yaml.safe_dump(playbook, sort_keys=False))
    assert run("playbook", "validate", str(pasted)) != 0
    assert "guide_99" in capsys.readouterr().err


class FakeCompletions(BaseHTTPRequestHandler):
    """POST /v1/chat/completions as OpenAI's API reference describes it: a bearer key, a JSON
    body with `model` and `messages` of `role`/`content`; answers `choices[0].message.content`."""

    answer: tuple[int, bytes] = (200, b"")
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        problems = []
        if self.path != "/v1/chat/completions":
            problems.append(f"path {self.path}")
        if self.headers.get("Authorization") != "Bearer sk-test":
            problems.append("no bearer key")
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            problems.append("not JSON")
        if body.get("model") != "copy-model":
            problems.append("model")
        messages = body.get("messages")
        if not (
            isinstance(messages, list)
            and [m.get("role") for m in messages] == ["system", "user"]
            and all(isinstance(m.get("content"), str) and m["content"] for m in messages)
        ):
            problems.append("messages")
        type(self).seen.append(body)
        status, payload = (400, json.dumps({"error": {"message": ", ".join(problems)}}).encode())
        if not problems:
            status, payload = type(self).answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        }
    ).encode()


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeCompletions]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LEADLOOP_COPY_API_BASE", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("LEADLOOP_COPY_API_KEY", "sk-test")
    monkeypatch.setenv("LEADLOOP_COPY_MODEL", "copy-model")
    FakeCompletions.seen = []
    try:
        yield FakeCompletions
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_s_lines_are_guarded(
    provider: type[FakeCompletions], capsys: pytest.CaptureFixture[str]
) -> None:
    provider.answer = (
        200,
        completion(
            "1. Get 30% off your automation guide!!\n"
            '2. "Five steps to your first automated journey"\n'
            "- Your first journey, in five steps\n"
            "- YOUR GUIDE IS WAITING\n"
        ),
    )
    args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
    assert run(*args) == 0
    captured = capsys.readouterr()
    templates = yaml.safe_load(captured.out.split("# Then send them")[0])
    assert [t["subject"] for t in templates.values()] == [
        "Five steps to your first automated journey",
        "Your first journey, in five steps",
    ]
    assert "refused: 'Get 30% off your automation guide!!': figure not in the brief: 30%" in (
        captured.err
    )
    assert "shouting: GUIDE, WAITING, YOUR" in captured.err
    # The brief went to the model: the original and the preheader as its one fact.
    user = provider.seen[0]["messages"][1]["content"]
    assert "Your guide, {{ traits.first_name" in user
    assert "- Five steps to your first automated journey" in user


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        ((401, b'{"error": {"message": "Incorrect API key provided"}}'), "401: Incorrect API key"),
        ((200, b"<html>gateway</html>"), "did not answer a chat completion"),
        ((200, b'{"choices": []}'), "did not answer a chat completion"),
        ((200, completion("x") + b" " * (1024 * 1024 + 10)), "more than 1048576 bytes"),
        ((200, completion("Get 50% off now!!")), "no variant passed the guardrails"),
    ],
)
def test_a_failing_provider_gives_a_clear_error(
    provider: type[FakeCompletions],
    answer: tuple[int, bytes],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider.answer = answer
    args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
    assert run(*args) != 0
    assert words in capsys.readouterr().err


def test_the_provider_needs_its_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("LEADLOOP_COPY_API_BASE", "LEADLOOP_COPY_API_KEY", "LEADLOOP_COPY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEADLOOP_COPY_MODEL", "m")
    args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
    assert run(*args) != 0
    err = capsys.readouterr().err
    assert "LEADLOOP_COPY_API_BASE, LEADLOOP_COPY_API_KEY" in err and "MODEL" not in err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--template", "nope"], "no email template 'nope'"),
        (["--template", "guide", "--channel", "whatsapp"], "no whatsapp template 'guide'"),
        (["--template", "guide", "--count", "0"], "expected 1 to 10"),
        (["--template", "guide", "--count", "many"], "expected a whole number"),
        (["--template", "guide", "--fact", "two\nlines"], "one line"),
        (["--template", "guide", "--fact", "x" * 501], "one line of 1 to 500"),
        (["--template", "guide", "--fact", "two\u2028lines"], "one line"),
        (["--template", "guide", "--fact", "Five steps\x1b[2J"], "without control characters"),
        (["--template", "bad name\n"], "--template"),
    ],
)
def test_bad_input_is_refused(
    extra: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("copy", "variants", str(EXAMPLE), *extra) != 0
    assert words in capsys.readouterr().err


def test_a_missing_or_broken_playbook_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("copy", "variants", str(tmp_path / "none.yaml"), "--template", "guide") != 0
    assert "none.yaml" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nchannels: [\n")
    assert run("copy", "variants", str(broken), "--template", "guide") != 0
    assert "broken.yaml" in capsys.readouterr().err


ENV_PLAYBOOK = """\
version: 1
channels:
  templates:
    email:
      promo:
        subject: "${LEADLOOP_TEST_BRAND}: your guide"
        preheader: "Use code ${LEADLOOP_TEST_CODE}"
        text: "hi"
    sms:
      note:
        text: "Reply to ${LEADLOOP_TEST_TOKEN} with your guide"
"""


@pytest.fixture
def env_playbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEADLOOP_TEST_BRAND", "Acme")
    monkeypatch.setenv("LEADLOOP_TEST_CODE", "SECRET-CODE")
    monkeypatch.setenv("LEADLOOP_TEST_TOKEN", "tok_SECRET")
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(ENV_PLAYBOOK)
    return playbook


@pytest.mark.parametrize(
    ("extra", "secrets", "placeholders"),
    [
        (["--template", "promo"], ["Acme", "SECRET-CODE"], ["${LEADLOOP_TEST_BRAND}"]),
        (["--template", "note", "--channel", "sms"], ["tok_SECRET"], ["${LEADLOOP_TEST_TOKEN}"]),
    ],
)
def test_variants_keep_env_placeholders_and_never_print_their_values(
    env_playbook: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    secrets: list[str],
    placeholders: list[str],
) -> None:
    assert run("copy", "variants", str(env_playbook), *extra, "--fact", "Five steps") == 0
    captured = capsys.readouterr()
    for secret in secrets:
        assert secret not in captured.out + captured.err
    templates = yaml.safe_load(captured.out.split("# Then send them")[0])
    part = "text" if "sms" in extra else "subject"
    # A variant made from the template keeps its placeholder: substituted when the pasted
    # playbook loads, so the variant follows the variable, as the original does.
    assert any(p in t[part] for t in templates.values() for p in placeholders)


def test_a_provider_never_sees_env_values(
    provider: type[FakeCompletions],
    env_playbook: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider.answer = (
        200,
        completion(
            "${LEADLOOP_TEST_BRAND}: the guide you asked for\n"
            "${LEADLOOP_COPY_API_KEY}: your guide\n"
            "Your guide from ${LEADLOOP_TEST_TOKEN:-us}\n"
        ),
    )
    args = ("copy", "variants", str(env_playbook), "--template", "promo", "--provider", "openai")
    assert run(*args) == 0
    sent = json.dumps(provider.seen[0])
    assert "SECRET-CODE" not in sent and "Acme" not in sent
    assert "${LEADLOOP_TEST_CODE}" in sent
    captured = capsys.readouterr()
    templates = yaml.safe_load(captured.out.split("# Then send them")[0])
    # A placeholder the template does not use would, once pasted, put that variable's value
    # (here the API key) in a subject sent to every lead.
    assert [t["subject"] for t in templates.values()] == [
        "${LEADLOOP_TEST_BRAND}: the guide you asked for"
    ]
    assert "environment placeholder not in the template: ${LEADLOOP_COPY_API_KEY}" in captured.err
    assert "${LEADLOOP_TEST_TOKEN:-us}" in captured.err


def promo_variants(
    playbook: Path, capsys: pytest.CaptureFixture[str], emails: str, count: int
) -> dict[str, Any]:
    """The templates printed for email template `promo`, of a playbook with `emails`."""
    playbook.write_text(f"version: 1\nchannels:\n  templates:\n    email:\n{emails}")
    args = ("copy", "variants", str(playbook), "--template", "promo", "--fact", "Five steps")
    assert run(*args, "--count", str(count)) == 0
    templates: dict[str, Any] = yaml.safe_load(capsys.readouterr().out.split("# Then send them")[0])
    return templates


def test_variant_names_skip_templates_the_playbook_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emails = (
        "      promo: {subject: 'Your guide', text: 'hi'}\n"
        "      promo_2: {subject: 'An older test', text: 'other'}\n"
    )
    templates = promo_variants(tmp_path / "playbook.yaml", capsys, emails, 2)
    # Pasted under the same mapping, a second `promo_2` would replace the one in use.
    assert sorted(templates) == ["promo_3", "promo_4"]


def test_content_given_as_parts_is_read(
    provider: type[FakeCompletions], capsys: pytest.CaptureFixture[str]
) -> None:
    # Some OpenAI-compatible servers answer `content` as a list of typed parts.
    answer = json.loads(completion(""))
    answer["choices"][0]["message"]["content"] = [
        {"type": "text", "text": "Five steps to your first automated journey\nYour first"},
        {"type": "image_url", "image_url": {"url": "https://example.invalid/x.png"}},
        {"type": "text", "text": " journey, in five steps"},
    ]
    provider.answer = (200, json.dumps(answer).encode())
    args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
    assert run(*args) == 0, capsys.readouterr().err
    templates = yaml.safe_load(capsys.readouterr().out.split("# Then send them")[0])
    assert [t["subject"] for t in templates.values()] == [
        "Five steps to your first automated journey",
        "Your first journey, in five steps",
    ]


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("LEADLOOP_COPY_API_BASE", "http://127.0.0.1:abc/v1", "LEADLOOP_COPY_API_BASE"),
        ("LEADLOOP_COPY_API_BASE", "127.0.0.1:8080/v1", "LEADLOOP_COPY_API_BASE"),
        ("LEADLOOP_COPY_API_BASE", "http://" + "a" * 70 + ".example/v1", "cannot reach"),
        ("LEADLOOP_COPY_API_KEY", "sk-tést", "LEADLOOP_COPY_API_KEY"),
    ],
)
def test_a_malformed_provider_setting_is_named(
    provider: type[FakeCompletions],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    words: str,
) -> None:
    monkeypatch.setenv(name, value)
    args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
    assert run(*args) != 0
    err = capsys.readouterr().err
    assert words in err
    assert "tést" not in err  # a key is not printed back


def test_provider_errors_print_neither_credentials_nor_terminal_controls(
    provider: type[FakeCompletions],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
    provider.answer = (500, b'{"error": {"message": "busy\\u001b]0;owned\\u0007 try later"}}')
    assert run(*args) != 0
    err = capsys.readouterr().err
    assert "500: busy" in err and "try later" in err
    assert "\x1b" not in err and "\x07" not in err
    monkeypatch.setenv("LEADLOOP_COPY_API_BASE", "http://user:s3cret@127.0.0.1:1/v1")
    assert run(*args) != 0
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:1/v1/chat/completions" in err and "s3cret" not in err


class Trickle(BaseHTTPRequestHandler):
    """Answers a byte at a time: each read is quick, the whole answer never comes."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "300")
        self.end_headers()
        try:
            for _ in range(300):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_provider_that_answers_too_slowly_is_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from leadloop.personalization import copy_llm

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("LEADLOOP_COPY_API_BASE", f"http://127.0.0.1:{server.server_port}/v1")
    monkeypatch.setenv("LEADLOOP_COPY_API_KEY", "sk-test")
    monkeypatch.setenv("LEADLOOP_COPY_MODEL", "copy-model")
    # The whole answer has a deadline, not only each read: this server would take 30 s.
    monkeypatch.setattr(copy_llm, "DEADLINE", 1.0)
    try:
        args = ("copy", "variants", str(EXAMPLE), "--template", "guide", "--provider", "openai")
        assert run(*args) != 0
        assert "did not answer within 1 s" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_every_copied_part_reads_back_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    playbook = tmp_path / "playbook.yaml"
    # A NEL (U+0085, `\N` in YAML) in a part copied from the original, beside other characters
    # YAML gives a meaning to.
    emails = (
        '      promo: {subject: "# Your guide: *now* & {here}", '
        'text: "Hi\\Nthere", html: "<p>a\\r\\nb \\u2028 \\t ${X:-y} \'q\' \\"dq\\" é 😀</p>"}\n'
    )
    templates = promo_variants(playbook, capsys, emails, 3)
    original = yaml.safe_load(playbook.read_text())["channels"]["templates"]["email"]["promo"]
    assert len(templates) == 3
    for template in templates.values():
        assert template["text"] == original["text"] and template["html"] == original["html"]
    assert "# Your guide: *now* & {here}: five steps" in [t["subject"] for t in templates.values()]
