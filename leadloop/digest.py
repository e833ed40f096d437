"""SHA-256 for the short strings the engine hashes per event (identifiers, message ids).

`hashlib.sha256` goes through an OpenSSL context set up for every call; for inputs of a few
dozen bytes that set-up costs more than the hashing (0.76 against 0.58 µs here, for a
20-byte email). CPython ships its own SHA-256 as a built-in module, and the digests are the
same bytes (SHA-256 is a standard; `tests/unit/test_digest.py` checks it against `hashlib`).
Not for secrets: HMACs keep using `hmac` with `hashlib`.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any


def _builtin_sha256() -> Callable[[bytes], Any]:
    # CPython 3.11 calls the module `_sha256`, 3.12+ `_sha2`; anything else falls back.
    for module in ("_sha256", "_sha2"):
        try:
            constructor: Callable[[bytes], Any] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        return constructor
    return hashlib.sha256


sha256 = _builtin_sha256()


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of `text` in UTF-8."""
    digest: str = sha256(text.encode()).hexdigest()
    return digest
