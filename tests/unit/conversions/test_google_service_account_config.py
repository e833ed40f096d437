"""`service_account_file` on a Google destination: read and checked when the playbook is
validated (located errors that never show the key), which credential wins, the disabled
warning, the signed assertion, and how the token endpoint's answers are read."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.auth import jwt

from leadloop.conversions.config import ConversionsConfig, parse_conversions
from leadloop.conversions.decide import Reject, Retry
from leadloop.conversions.google_credentials import (
    SCOPES,
    Token,
    assertion,
    load_service_account,
    read_token_answer,
)
from leadloop.errors import PlaybookError
from leadloop.playbook.load import load_playbook, parse_playbook
from tests.google_service_accounts import EMAIL, write_key_file

TOKEN_URI = "https://oauth2.googleapis.com/token"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "playbook.yaml"
NOW = 1_800_000_000.0


def section(text: str, file: str = "pb.yaml", **env: str) -> ConversionsConfig:
    playbook = parse_playbook(text, file, env)
    return parse_conversions(playbook.sections.get("conversions"))


def google(file: str, *, kind: str = "google", token: str = "") -> str:
    ids = (
        "      destination: 1234567890/987654\n"
        if kind == "google"
        else "      customer_id: 1234567890\n      conversion_action: '42'\n"
        "      developer_token: dev\n"
    )
    return (
        "version: 1\nconversions:\n  destinations:\n    - id: g\n"
        f"      type: {kind}\n{ids}"
        f"      access_token: '{token}'\n"
        f"      service_account_file: '{file}'\n"
    )


def test_a_key_file_enables_the_destination_without_an_access_token(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "sa.json", TOKEN_URI)
    for kind in ("google", "google_ads"):
        config = section(google(str(key.path), kind=kind))
        dest = config.destination("g")
        assert dest is not None and dest.enabled and config.warnings == ()
        assert dest.service_account is not None and dest.access_token == ""
        assert dest.service_account.client_email == EMAIL
        assert dest.service_account.token_uri == TOKEN_URI
        assert dest.service_account.key_id == key.key_id
        assert "PRIVATE KEY" not in repr(dest)


def test_with_both_the_service_account_wins_and_a_warning_says_so(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "sa.json", TOKEN_URI)
    config = section(google(str(key.path), token="ya29.pasted"))
    dest = config.destination("g")
    assert dest is not None and dest.service_account is not None
    assert dest.access_token == ""  # never sent: one credential per destination
    (warning,) = config.warnings
    text = str(warning)
    assert text.startswith("pb.yaml:4: conversions.destinations[0]")
    assert "both access_token and service_account_file are set" in text
    assert "the service account is used" in text


def test_neither_disables_it_with_a_warning_naming_both(tmp_path: Path) -> None:
    config = section(google(""))
    dest = config.destination("g")
    assert dest is not None and not dest.enabled
    assert dest.disabled_reason == "access_token (or service_account_file) not set"
    assert "'g' is disabled: access_token (or service_account_file) not set" in str(
        config.warnings[0]
    )


def test_the_example_playbook_takes_the_key_file_from_the_environment(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "sa.json", TOKEN_URI)
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "${LEADLOOP_GOOGLE_SERVICE_ACCOUNT_FILE:-}" in text
    assert "${LEADLOOP_GOOGLE_ADS_SERVICE_ACCOUNT_FILE:-}" in text
    off = section(text, LEADLOOP_GOOGLE_DESTINATION="1234567890/987654").destination("google")
    assert off is not None and not off.enabled
    on = section(
        text,
        LEADLOOP_GOOGLE_DESTINATION="1234567890/987654",
        LEADLOOP_GOOGLE_SERVICE_ACCOUNT_FILE=str(key.path),
        LEADLOOP_GOOGLE_ADS_CUSTOMER_ID="1234567890",
        LEADLOOP_GOOGLE_ADS_CONVERSION_ACTION="42",
        LEADLOOP_GOOGLE_ADS_DEVELOPER_TOKEN="d",
        LEADLOOP_GOOGLE_ADS_SERVICE_ACCOUNT_FILE=str(key.path),
    )
    for name in ("google", "google_ads"):
        dest = on.destination(name)
        assert dest is not None and dest.enabled and dest.service_account is not None


def test_a_relative_path_is_relative_to_the_playbook_file(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    write_key_file(tmp_path / "keys" / "sa.json", TOKEN_URI)
    playbook_file = tmp_path / "playbook.yaml"
    playbook_file.write_text(google("keys/sa.json"), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        playbook = load_playbook(playbook_file, env={})
    finally:
        os.chdir(cwd)
    dest = parse_conversions(playbook.sections["conversions"]).destination("g")
    assert dest is not None and dest.service_account is not None
    assert dest.service_account.path == str(tmp_path / "keys" / "sa.json")


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


BAD_FILES: list[tuple[str, object, str]] = [
    ("missing", None, "no such file"),
    ("directory", "dir", "is a directory"),
    ("not json", "{ not json", "is not JSON"),
    ("a list", "[]", "is not a JSON object"),
    ("an OAuth client", {"type": "authorized_user"}, "is not a service-account key"),
    ("no type", {"type": None}, "expected type 'service_account'"),
    ("no client_email", {"client_email": None}, "has no client_email"),
    ("no private_key", {"private_key": ""}, "has no private_key"),
    ("no token_uri", {"token_uri": None}, "has no token_uri"),
    ("a plain-http token_uri", {"token_uri": "http://oauth2.example.com/token"}, "https://"),
    ("an unparsable token_uri", {"token_uri": "https://[::1/token"}, "https://"),  # raised
    ("a broken key", {"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"}, "not a PEM"),
    ("an EC key", {"private_key": "ec"}, "not an RSA key"),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_key_file_is_an_error_at_file_line_field_without_the_key(
    tmp_path: Path, case: str, content: object, message: str
) -> None:
    path = tmp_path / "sa.json"
    key = write_key_file(path, TOKEN_URI)
    if content is None:
        path.unlink()
    elif content == "dir":
        path.unlink()
        path.mkdir()
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        assert isinstance(content, dict)
        overrides = {k: (_ec_pem() if v == "ec" else v) for k, v in content.items()}
        write_key_file(path, TOKEN_URI, **overrides)
    with pytest.raises(PlaybookError) as caught:
        section(google(str(path)))
    error = caught.value
    assert (error.file, error.line) == ("pb.yaml", 8)
    assert error.field == "conversions.destinations[0].service_account_file"
    assert message in str(error) and str(path) in str(error)
    assert "PRIVATE KEY" not in str(error) and key.private_pem[40:80] not in str(error)


def test_only_google_destinations_take_a_key_file(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "sa.json", TOKEN_URI)
    text = (
        "version: 1\nconversions:\n  destinations:\n    - id: m\n      type: meta\n"
        f"      pixel_id: '1'\n      service_account_file: {key.path}\n"
    )
    with pytest.raises(PlaybookError, match="only google and google_ads destinations") as caught:
        section(text)
    assert caught.value.line == 7


def test_the_assertion_is_an_rs256_jwt_a_real_verifier_accepts(tmp_path: Path) -> None:
    key = write_key_file(tmp_path / "sa.json", TOKEN_URI)
    account = load_service_account(str(key.path))
    signed = assertion(account, SCOPES["google"], NOW)
    header = jwt.decode_header(signed)
    assert header == {"alg": "RS256", "typ": "JWT", "kid": key.key_id}
    # The verifier checks iat/exp against the wall clock; NOW is in the future, so widen it.
    claims = jwt.decode(
        signed,
        certs={key.key_id: key.public_pem},
        audience=TOKEN_URI,
        clock_skew_in_seconds=int(abs(NOW - time.time())) + 60,
    )
    assert claims == {
        "iss": EMAIL,
        "scope": "https://www.googleapis.com/auth/datamanager",
        "aud": TOKEN_URI,
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
    }
    assert SCOPES["google_ads"] == "https://www.googleapis.com/auth/adwords"


def test_token_answers(tmp_path: Path) -> None:
    account = load_service_account(str(write_key_file(tmp_path / "sa.json", TOKEN_URI).path))

    def read(status: int, body: object, headers: dict[str, str] | None = None) -> object:
        raw = json.dumps(body).encode()
        return read_token_answer(account, status, headers or {}, raw, NOW, platform="google")

    ok = read(200, {"access_token": "ya29.a", "expires_in": 3599, "token_type": "Bearer"})
    assert ok == Token("ya29.a", NOW + 3599 - 300)
    short = read(200, {"access_token": "ya29.b", "expires_in": 100})
    assert isinstance(short, Token) and short.refresh_at == NOW + 50
    assert isinstance(read(200, {"token_type": "Bearer"}), Retry)
    busy = read(503, {"error": "internal_failure"}, {"Retry-After": "7"})
    assert isinstance(busy, Retry) and busy.retry_after == 7.0
    assert isinstance(read(429, {}), Retry)
    refused = read(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
    assert isinstance(refused, Reject)
    assert refused.reason == (
        f"google: service account {EMAIL}: token endpoint {TOKEN_URI}: HTTP 400 invalid_grant: "
        "Invalid JWT Signature. (the key may have been deleted or disabled in Google Cloud, the "
        "service account removed, or this machine's clock is off)"
    )
    assert isinstance(read(401, {"error": "invalid_client"}), Reject)
