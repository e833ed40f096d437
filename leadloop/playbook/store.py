"""Applied playbooks: stored as their source text (before `${ENV}` substitution, so no
secret lands in the database), one row per apply; the newest row per workspace is live."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec

from leadloop.errors import PlaybookError
from leadloop.playbook import load
from leadloop.playbook.fields import fail
from leadloop.playbook.model import Playbook
from leadloop.playbook.nodes import Map, Node, merge, parse_text, read_text
from leadloop.storage.db import PostgresConnection, SqliteConnection

Conn = SqliteConnection | PostgresConnection
_sources = msgspec.json.Decoder(dict[str, str])
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class Applied:
    id: int
    workspace: str
    digest: str
    sources: dict[str, str]
    applied_at: float


def read_sources(path: str | Path) -> dict[str, str]:
    """File name → text for a playbook file or folder, in merge order."""
    return {str(p): read_text(p) for p in load.playbook_files(Path(path))}


def build(sources: Mapping[str, str], env: Mapping[str, str] | None = None) -> Playbook:
    """Parse, merge and validate sources exactly as `load_playbook` does files."""
    environment = os.environ if env is None else env
    root: Node | None = None
    for name, text in sources.items():
        tree = parse_text(text, name, environment)
        if not isinstance(tree, Map):
            fail(tree, "", "a playbook is a mapping of sections (version, scoring, ...)")
        root = tree if root is None else merge(root, tree)
    if root is None:
        raise PlaybookError("<playbook>", None, "", "the playbook is empty")
    playbook = load._build(root, tuple(sources))
    # Each stage owns its section; journeys check their templates against the channels'.
    from leadloop.channels.config import parse_channels
    from leadloop.journeys.config import parse_journeys

    parse_journeys(playbook, parse_channels(playbook.sections.get("channels")).template_names())
    return playbook


def save(conn: Conn, playbook: Playbook, sources: Mapping[str, str], now: float) -> int:
    rows = conn.execute(
        "INSERT INTO playbooks (workspace_id, digest, source, applied_at) VALUES (?, ?, ?, ?) "
        "RETURNING id",
        (playbook.workspace, playbook.digest, _encoder.encode(dict(sources)).decode(), now),
    )
    return int(rows[0][0])


def latest(conn: Conn, workspace: str) -> Applied | None:
    rows = conn.execute(
        "SELECT id, digest, source, applied_at FROM playbooks WHERE workspace_id = ? "
        "ORDER BY id DESC LIMIT 1",
        (workspace,),
    )
    if not rows:
        return None
    r = rows[0]
    return Applied(int(r[0]), workspace, r[1], _sources.decode(r[2]), float(r[3]))


def latest_ids(conn: Conn) -> dict[str, int]:
    rows = conn.execute("SELECT workspace_id, MAX(id) FROM playbooks GROUP BY workspace_id")
    return {str(ws): int(i) for ws, i in rows}
