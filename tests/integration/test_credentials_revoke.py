"""Listing and revoking write keys and admin tokens, from the CLI and as a running engine
sees it: a leaked key must be stoppable without a restart."""

from __future__ import annotations

import json

import pytest

import leadloop.app
from leadloop.storage import workspaces
from leadloop.storage.db import DatabaseUrl, connect
from tests.integration.conftest import Api
from tests.integration.test_cli import cli

TRACK = json.dumps({"userId": "u1", "event": "Signed Up"})


def _created(db: str, noun: str, *args: str) -> tuple[str, str]:
    """(the secret, the id `create` announced for it)."""
    out = cli(db, noun, "create", *args)
    assert out.returncode == 0, out.stderr
    secret = out.stdout.strip().splitlines()[-1]
    announced = out.stderr.split("; id ")[1].split(")")[0]
    return secret, announced


@pytest.mark.parametrize(("noun", "lookup"), [("keys", "write_key"), ("tokens", "token")])
def test_list_names_every_credential_by_id_without_its_secret(
    sqlite_url: str, noun: str, lookup: str
) -> None:
    site, site_id = _created(sqlite_url, noun, "--name", "site")
    shop, shop_id = _created(sqlite_url, noun, "--workspace", "shop", "--create-workspace")
    out = cli(sqlite_url, noun, "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == [site_id, shop_id]
    assert lines[0].endswith("default  site") and " shop " in lines[1]
    assert site not in out.stdout and shop not in out.stdout
    assert site_id == workspaces.hash_secret(site)[:12]
    only = json.loads(cli(sqlite_url, noun, "list", "--workspace", "shop", "--json").stdout)
    assert [(c["fingerprint"], c["workspace_id"]) for c in only] == [(shop_id, "shop")]


@pytest.mark.parametrize(("noun", "lookup"), [("keys", "write_key"), ("tokens", "token")])
def test_revoke_by_id_or_by_the_secret_deletes_that_one_only(
    sqlite_url: str, noun: str, lookup: str
) -> None:
    first, first_id = _created(sqlite_url, noun)
    second, _ = _created(sqlite_url, noun)
    third, _ = _created(sqlite_url, noun)
    find = getattr(workspaces, f"workspace_for_{lookup}")
    out = cli(sqlite_url, noun, "revoke", first_id[:8].upper())
    assert out.returncode == 0 and "revoked" in out.stdout and first_id in out.stdout, out.stderr
    out = cli(sqlite_url, noun, "revoke", second)
    assert out.returncode == 0, out.stderr
    assert second not in out.stdout + out.stderr  # the secret is not echoed
    conn = connect(DatabaseUrl.parse(sqlite_url))
    try:
        assert [find(conn, s) for s in (first, second, third)] == [None, None, "default"]
    finally:
        conn.close()


@pytest.mark.parametrize(("noun", "table"), [("keys", "write_keys"), ("tokens", "admin_tokens")])
def test_a_revoke_that_names_nothing_or_several_changes_nothing(
    sqlite_url: str, noun: str, table: str
) -> None:
    cli(sqlite_url, "migrate")
    conn = connect(DatabaseUrl.parse(sqlite_url))
    column = "key_hash" if noun == "keys" else "token_hash"
    with conn.transaction():
        for tail in ("0" * 56, "1" * 56):  # two ids sharing their first 8 characters
            conn.execute(
                f"INSERT INTO {table} ({column}, workspace_id, name, created_at) "
                "VALUES (?, 'default', 'n', 0)",
                ("deadbeef" + tail,),
            )
    conn.close()
    secret = ("wk_" if noun == "keys" else "lla_") + "x" * 32
    for ref, words in (
        ("deadbeef", "several"),
        ("deadbeee", "no "),
        ("deadbee", "name the"),  # 7 characters: too few to be sure of the one meant
        ("site", "name the"),
        ("", "name the"),
        (secret, "no "),
    ):
        out = cli(sqlite_url, noun, "revoke", ref)
        assert out.returncode == 2 and words in out.stderr, (ref, out.stderr)
        assert "x" * 20 not in out.stderr  # a mistyped secret is not echoed whole
    conn = connect(DatabaseUrl.parse(sqlite_url))
    try:
        assert conn.execute(f"SELECT COUNT(*) FROM {table}")[0][0] == 2
    finally:
        conn.close()
    out = cli(sqlite_url, noun, "revoke", "DEADBEEF0")
    assert out.returncode == 0 and "deadbeef0000" in out.stdout, out.stderr


def test_a_running_engine_refuses_a_revoked_key_once_its_cache_ends(api: Api) -> None:
    """The engine remembers a key's workspace for `CREDENTIAL_CACHE_SECONDS` of the machine's
    clock; a revoke from another process takes effect when that ends."""
    clock = [1000.0]
    # The engine's own seam: patching `time.monotonic` would also stop the event loop's clock.
    api.engine.credential_clock = lambda: clock[0]
    assert api.client.post("/v1/track", content=TRACK, headers=api.basic()).status_code == 200
    admin = api.client.get("/api/v1/status", headers=api.bearer())
    assert admin.status_code == 200

    def revoke(c):  # type: ignore[no-untyped-def]
        workspaces.revoke_credential(c, "write_key", api.write_key)
        workspaces.revoke_credential(c, "admin_token", api.token)

    api.engine.writer.submit(revoke).result()
    clock[0] += leadloop.app.CREDENTIAL_CACHE_SECONDS - 0.5
    assert api.client.post("/v1/track", content=TRACK, headers=api.basic()).status_code == 200
    clock[0] += 1.0
    assert api.client.post("/v1/track", content=TRACK, headers=api.basic()).status_code == 401
    assert api.client.get("/api/v1/status", headers=api.bearer()).status_code == 401
    # The other workspace's credentials are untouched.
    other = api.client.post("/v1/track", content=TRACK, headers=api.basic(api.other_key))
    assert other.status_code == 200
