"""Identifiers a log written before the tracking API refused them may still hold: they are no
identifiers, rather than values PostgreSQL cannot look up or index (the processor would retry
them forever)."""

from __future__ import annotations

from leadloop.identity.normalize import (
    MAX_EXTERNAL_ID,
    normalize_email,
    normalize_external_id,
)


def test_an_email_with_nul_is_no_identifier() -> None:
    assert normalize_email("ada\x00@example.com") is None
    assert normalize_email("Ada@Example.com") == "ada@example.com"


def test_an_external_id_longer_than_the_limit_is_no_identifier() -> None:
    fits = "x" * (MAX_EXTERNAL_ID - len("crm:"))
    assert normalize_external_id({"type": "crm", "id": fits}) == f"crm:{fits}"
    assert normalize_external_id({"type": "crm", "id": fits + "x"}) is None
    assert normalize_external_id({"type": "c" * 20_000, "id": "1"}) is None


def test_an_external_id_with_nul_is_no_identifier() -> None:
    assert normalize_external_id({"type": "crm", "id": "c-\x001"}) is None
    assert normalize_external_id({"type": "cr\x00m", "id": "c-1"}) is None
