"""The CLI on a database with no server running, including bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from leadloop.storage import workspaces
from leadloop.storage.db import DatabaseUrl, connect


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadloop", *args],
        env={**os.environ, "LEADLOOP_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_and_tokens_print_the_secret_last_and_store_its_hash(sqlite_url: str) -> None:
    key = cli(sqlite_url, "keys", "create", "--name", "site").stdout.strip().splitlines()[-1]
    token = cli(sqlite_url, "tokens", "create").stdout.strip().splitlines()[-1]
    conn = connect(DatabaseUrl.parse(sqlite_url))
    assert workspaces.workspace_for_write_key(conn, key) == "default"
    assert workspaces.workspace_for_token(conn, token) == "default"
    stored = [r[0] for r in conn.execute("SELECT key_hash FROM write_keys")]
    assert key not in stored and workspaces.hash_secret(key) in stored
    conn.close()


def test_unknown_workspace_is_a_clear_error(sqlite_url: str) -> None:
    out = cli(sqlite_url, "keys", "create", "--workspace", "nope")
    assert out.returncode == 2 and "does not exist" in out.stderr
    out = cli(sqlite_url, "keys", "create", "--workspace", "shop", "--create-workspace")
    assert out.returncode == 0 and out.stdout.strip().startswith("wk_")


def test_bad_database_url_is_a_clear_error() -> None:
    out = cli("mysql://x", "migrate")
    assert out.returncode == 2 and "unsupported database URL" in out.stderr


def test_unknown_command_and_help() -> None:
    out = cli("sqlite:////tmp/unused.db", "frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr
    out = cli("sqlite:////tmp/unused.db", "serve", "--help")
    assert out.returncode == 0 and "--clock" in out.stdout


def test_playbook_validate_names_file_line_and_field(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nscoring:\n  models:\n    - id: m\n      stages: [{name: a}]\n"
        "      fit:\n        - id: r\n          field: title\n          op: looks_like\n"
        "          value: x\n          points: 1\n"
    )
    out = cli(sqlite_url, "playbook", "validate", str(bad))
    assert out.returncode == 1
    assert f"{bad}:9" in out.stderr and "op" in out.stderr
    out = cli(sqlite_url, "playbook", "apply", str(bad))
    assert out.returncode == 2
    assert cli(sqlite_url, "playbook", "validate", "examples/playbook.yaml").returncode == 0


def test_playbook_apply_and_diff(sqlite_url: str, tmp_path: Path) -> None:
    assert (
        "applied playbook" in cli(sqlite_url, "playbook", "apply", "examples/playbook.yaml").stdout
    )
    assert "unchanged" in cli(sqlite_url, "playbook", "apply", "examples/playbook.yaml").stdout
    changed = tmp_path / "p.yaml"
    changed.write_text(
        Path("examples/playbook.yaml").read_text().replace("points: 15", "points: 20", 1)
    )
    diff = cli(sqlite_url, "playbook", "diff", str(changed)).stdout
    assert "15" in diff and "20" in diff


def test_explain_unknown_profile(sqlite_url: str) -> None:
    out = cli(sqlite_url, "explain", "nobody@example.com")
    assert out.returncode == 1 and "no profile" in out.stderr


def test_outbox_replay_with_nothing_dead(sqlite_url: str) -> None:
    out = cli(sqlite_url, "outbox", "replay")
    assert out.returncode == 0 and "re-driven 0" in out.stdout
