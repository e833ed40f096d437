"""`leadloop backup`: a consistent copy of the engine's SQLite database, taken while it runs
(`storage.backup`); a PostgreSQL database is pointed to `pg_dump`."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leadloop.config import Settings
from leadloop.errors import LeadloopError
from leadloop.storage.backup import check_target, copy_database
from leadloop.storage.db import DatabaseUrl
from leadloop.storage.migrate import list_migrations


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "backup",
        help="copy the SQLite database while the engine runs (consistent, checked, then "
        "renamed into place)",
    )
    p.add_argument("--to", required=True, type=_file, metavar="FILE", help="the backup file")
    p.add_argument("--force", action="store_true", help="replace FILE when it exists")
    db_arg(p)
    p.set_defaults(handler=cmd_backup)


def _file(raw: str) -> str:
    if not raw:
        raise argparse.ArgumentTypeError("empty: give the backup file's path")
    return raw


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from leadloop.app import open_existing

    url = DatabaseUrl.parse(settings.database_url)
    if url.dialect == "postgres":
        raise LeadloopError(
            "leadloop backup copies a SQLite database; this one is PostgreSQL: back it up with "
            f"`pg_dump --format=custom --file={shlex.quote(args.to)} "
            f"{shlex.quote(without_password(url.url))}` (it asks for the password, or reads "
            "PGPASSWORD or ~/.pgpass) and restore with pg_restore, or use your managed "
            "service's snapshots (docs/operations.md)"
        )
    # A database behind this version is copied too: a backup before `leadloop migrate` is the
    # one an upgrade needs.
    open_existing(settings.database_url, older=True).close()
    assert url.path is not None
    database, target = Path(url.path), Path(args.to)
    check_target(database, target, force=args.force)
    with tqdm(unit="page", file=sys.stderr, disable=not sys.stderr.isatty(), desc="backup") as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        copied = copy_database(database, target, progress)
    newest = list_migrations("sqlite")[-1].version
    behind = "" if copied.schema_version >= newest else f"; this leadloop's is {newest}"
    print(
        f"backed up {database} to {target}: {_size(copied.size)}, {copied.events:,} events in "
        f"its log, schema version {copied.schema_version}{behind}"
    )
    return 0


def without_password(url: str) -> str:
    """A PostgreSQL URL as it may be shown: its password (in the user part or a `password=`
    parameter) left out."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://USER@HOST/DATABASE"
    user, _, host = parts.netloc.rpartition("@")
    user = user.partition(":")[0]
    query = "&".join(
        part for part in parts.query.split("&") if part and not part.startswith("password=")
    )
    # Built by hand: `urlunsplit` drops the `//` of an empty host (`postgresql:///db?host=...`).
    return (
        f"{parts.scheme}://{user + '@' if user else ''}{host}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _size(size: int) -> str:
    if size < 1000:
        return f"{size:,} bytes"
    amount, unit = size / 1000, "KB"
    for bigger in ("MB", "GB", "TB"):
        if amount < 1000:
            break
        amount, unit = amount / 1000, bigger
    return f"{amount:.1f} {unit}"
