"""`leadloop.digest` uses CPython's built-in SHA-256 instead of OpenSSL's: same digests."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from leadloop import digest


@given(st.text())
def test_the_builtin_sha256_gives_hashlibs_digests(text: str) -> None:
    assert digest.sha256_hex(text) == hashlib.sha256(text.encode()).hexdigest()


@given(st.binary(max_size=300))
def test_the_constructor_matches_hashlib_on_bytes(data: bytes) -> None:
    assert digest.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_built_in_module_is_the_one_in_use_on_cpython() -> None:
    # The point of the module: not OpenSSL's constructor (hashlib.sha256 is `openssl_sha256`).
    assert digest.sha256 is not hashlib.sha256
