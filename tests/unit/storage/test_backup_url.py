"""The `pg_dump` command `leadloop backup` gives for a PostgreSQL database shows its URL
without the password, wherever the URL holds it."""

from __future__ import annotations

import pytest

from leadloop.storage.cli import without_password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://u:se@cret@h/db", "postgresql://u@h/db"),
        ("postgresql://u:se%40cret@h/db", "postgresql://u@h/db"),
        ("postgresql://:secret@h/db", "postgresql://h/db"),
        ("postgres://u:secret@[::1]:5432/db", "postgres://u@[::1]:5432/db"),
        (
            "postgresql://u@h/db?password=secret&sslmode=require",
            "postgresql://u@h/db?sslmode=require",
        ),
        (
            "postgresql:///db?host=/var/run/postgresql&password=secret",
            "postgresql:///db?host=/var/run/postgresql",
        ),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_the_password_is_left_out(url: str, shown: str) -> None:
    assert without_password(url) == shown
