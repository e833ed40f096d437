"""Service-account key files for tests: a fresh RSA key, written as Google Cloud's console
downloads it, and what the fake token endpoint needs to trust it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

EMAIL = "leadloop@example-project.iam.gserviceaccount.com"


@cache
def rsa_key(name: str = "main") -> rsa.RSAPrivateKey:
    """One 2048-bit key per name for the whole run (generating one takes a moment)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass(frozen=True)
class KeyFile:
    path: Path
    key_id: str
    email: str
    key: rsa.RSAPrivateKey

    @property
    def public_pem(self) -> str:
        return public_pem(self.key)

    @property
    def private_pem(self) -> str:
        return private_pem(self.key)


def write_key_file(
    path: Path,
    token_uri: str,
    /,
    *,
    key: rsa.RSAPrivateKey | None = None,
    key_id: str = "0123456789abcdef0123456789abcdef01234567",
    email: str = EMAIL,
    **overrides: object,
) -> KeyFile:
    """A key file; `overrides` replace (or, as None, remove) its fields."""
    key = key or rsa_key()
    data: dict[str, object] = {
        "type": "service_account",
        "project_id": "example-project",
        "private_key_id": key_id,
        "private_key": private_pem(key),
        "client_email": email,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return KeyFile(path, key_id, email, key)
