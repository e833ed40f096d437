"""Applied playbooks: stored as their source text (before `${ENV}` substitution, so no
secret lands in the database), one row per apply; the newest row per workspace is live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import msgspec

from leadloop.playbook import load
from leadloop.playbook.model import Playbook
from leadloop.storage.db import PostgresConnection, SqliteConnection

if TYPE_CHECKING:
    from leadloop.journeys.model import JourneySet

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


read_sources = load.read_sources


def build(sources: Mapping[str, str], env: Mapping[str, str] | None = None) -> Playbook:
    """Parse, merge and validate sources exactly as `load_playbook` does files."""
    root = load.merge_sources(sources, env)
    playbook = load._build(root, tuple(sources))
    journeys = journeys_of(playbook)
    if journeys.warnings:
        playbook = replace(playbook, warnings=(*playbook.warnings, *journeys.warnings))
    return playbook


def journeys_of(playbook: Playbook) -> JourneySet:
    """The playbook's journeys as `build` validates them: each stage owns its section, and
    journeys check their templates against the channels'."""
    from leadloop.channels.config import parse_channels
    from leadloop.journeys.config import parse_journeys

    channels = parse_channels(playbook.sections.get("channels"))
    return parse_journeys(playbook, channels.template_names(), (a.id for a in channels.audiences))


def refused(workspace: str, playbook_id: int, error: Exception) -> str:
    """Why an engine does not start: a stored playbook this version no longer accepts
    (validation grows stricter across versions). Said with what to do about it."""
    return (
        f"stored playbook #{playbook_id} of workspace {workspace} does not load in this "
        f"version: {error}. Not starting rather than run workspace {workspace} with no "
        "playbook (no scoring, journeys or conversions). Check the playbook's files with "
        "`leadloop playbook validate PATH`, fix them and `leadloop playbook apply PATH` (or "
        "start with `--playbook PATH`); or go back to the version that applied it"
    )


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
