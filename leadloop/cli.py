"""The `leadloop` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from leadloop.clock import SystemClock
from leadloop.config import Settings, port_number, require_database_url, whole_number
from leadloop.errors import ConfigError, LeadloopError, escaped
from leadloop.files import FileTooLarge, read_limited, reason
from leadloop.runtime import freeze_startup
from leadloop.storage import workspaces
from leadloop.storage.db import DatabaseUrl, connect

Handler = Callable[[argparse.Namespace, Settings], int]


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.from_env()
    overrides = {}
    if getattr(args, "database_url", None):
        overrides["database_url"] = args.database_url
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    if getattr(args, "playbook", None):
        overrides["playbook"] = args.playbook
    if overrides:
        from dataclasses import replace

        s = replace(s, **overrides)
    if hasattr(args, "database_url"):  # the commands that open the database
        require_database_url(s)
    return s


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.app import prepare_database

    prepare_database(DatabaseUrl.parse(settings.database_url), SystemClock())
    print(f"database is up to date: {settings.database_url}")
    return 0


def _with_workspace(settings: Settings, workspace: str, create: bool) -> object:
    from leadloop.app import prepare_database

    url = DatabaseUrl.parse(settings.database_url)
    prepare_database(url, SystemClock())
    conn = connect(url)
    if not workspaces.workspace_exists(conn, workspace):
        if not create:
            conn.close()
            raise LeadloopError(
                f"workspace {workspace!r} does not exist (add --create-workspace to create it)"
            )
        with conn.transaction():
            workspaces.ensure_workspace(conn, workspace, SystemClock().now())
    return conn


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    conn = _with_workspace(settings, args.workspace, args.create_workspace)
    with conn.transaction():  # type: ignore[attr-defined]
        key = workspaces.create_write_key(conn, args.workspace, args.name, SystemClock().now())  # type: ignore[arg-type]
    conn.close()  # type: ignore[attr-defined]
    print(
        f"write key for workspace {args.workspace!r} (shown once; stored hashed; id "
        f"{workspaces.hash_secret(key)[: workspaces.FINGERPRINT]}):",
        file=sys.stderr,
    )
    print(key)
    return 0


def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    conn = _with_workspace(settings, args.workspace, args.create_workspace)
    with conn.transaction():  # type: ignore[attr-defined]
        token = workspaces.create_admin_token(conn, args.workspace, args.name, SystemClock().now())  # type: ignore[arg-type]
    conn.close()  # type: ignore[attr-defined]
    print(
        f"admin token for workspace {args.workspace!r} (shown once; stored hashed; id "
        f"{workspaces.hash_secret(token)[: workspaces.FINGERPRINT]}):",
        file=sys.stderr,
    )
    print(token)
    return 0


_KINDS = {"keys": "write_key", "tokens": "admin_token"}


def cmd_credentials_list(args: argparse.Namespace, settings: Settings) -> int:
    """Lists ids (fingerprints), never secrets: only hashes are stored."""
    from datetime import UTC, datetime

    from leadloop.app import open_existing

    conn = open_existing(settings.database_url, args.workspace)
    try:
        found = workspaces.list_credentials(conn, _KINDS[args.noun], args.workspace)
    finally:
        conn.close()
    if args.json:
        print(json.dumps([c.__dict__ for c in found], indent=2))
        return 0
    if not found:
        print(f"no {_KINDS[args.noun].replace('_', ' ')}s", file=sys.stderr)
    for c in found:
        created = datetime.fromtimestamp(c.created_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"{c.fingerprint}  {created}  {c.workspace_id}  {c.name}")
    return 0


def cmd_credentials_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """Deletes the credential; a running engine refuses it within
    `app.CREDENTIAL_CACHE_SECONDS`, and at once after a restart."""
    from leadloop.app import CREDENTIAL_CACHE_SECONDS, open_existing

    conn = open_existing(settings.database_url)
    try:
        with conn.transaction():
            gone = workspaces.revoke_credential(conn, _KINDS[args.noun], args.id)
    finally:
        conn.close()
    what = _KINDS[args.noun].replace("_", " ")
    print(
        f"revoked {what} {gone.fingerprint} ({gone.name!r}, workspace {gone.workspace_id!r}); "
        f"a running engine refuses it within {CREDENTIAL_CACHE_SECONDS:g} s"
    )
    return 0


def _serve(
    settings: Settings,
    *,
    manual_clock: bool,
    banner: Callable[[], None] | None,
    run_processor: bool = True,
    listening: socket.socket | None = None,
) -> int:
    import uvicorn

    from leadloop.app import Engine

    # Listen before anything is announced or started: a port in use (or a host that does not
    # resolve) is one error line, not a "serving on" line, a banner and then the server's error.
    if listening is None:
        listening = _listen(settings.host, settings.port)
    engine = Engine(settings, manual_clock=manual_clock, run_processor=run_processor)
    try:
        engine.start()
    except BaseException:
        listening.close()  # a refused start (a stored playbook this version does not accept)
        raise
    freeze_startup()
    config = uvicorn.Config(
        engine.asgi(),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    if banner is not None:
        banner()
    logging.getLogger("leadloop").info(
        "serving on http://%s:%d (database %s, clock %s)",
        settings.host,
        settings.port,
        settings.database_url,
        "manual" if manual_clock else "system",
    )
    # uvicorn stops serving on SIGTERM, then puts back the handler it found and raises the
    # signal again: with the default one the process died there, before `engine.stop` let the
    # sends in flight finish and be recorded (they were sent again after a restart) and wrote
    # the opens and clicks already answered. This handler lets `run` return instead (and
    # stops the server should the signal come before uvicorn listens for it).
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run(sockets=[listening])
    finally:
        engine.stop()
        listening.close()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket for the server (uvicorn listens on it and serves)."""
    sock: socket.socket | None = None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except (OSError, UnicodeError) as error:  # UnicodeError: a name IDNA cannot encode (a..b)
        if sock is not None:
            sock.close()
        reason = getattr(error, "strerror", None) or error
        raise LeadloopError(f"cannot listen on {host}:{port}: {reason}") from error
    sock.set_inheritable(True)
    return sock


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    return _serve(
        settings,
        manual_clock=args.clock == "manual",
        banner=None,
        run_processor=not args.no_processor,
    )


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import threading

    from leadloop.app import Engine

    engine = Engine(settings)
    engine.start()
    freeze_startup()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    logging.getLogger("leadloop").info("worker processing %s", settings.database_url)
    done.wait()
    engine.stop()
    return 0


CREDENTIALS_LIMIT = 64 * 1024


def _saved_credentials(path: Path) -> dict[str, str]:
    """What an earlier `quickstart` saved; anything unreadable as that (not JSON, not an object,
    values not strings) counts as nothing saved, so new credentials replace it. A path that
    cannot be read at all (a folder, no permission) is an error: it could not be written either."""
    try:
        exists, regular = path.exists(), path.is_file()
    except (OSError, ValueError) as error:  # a name too long, NUL: `exists` raises, not False
        raise LeadloopError(f"cannot read --credentials {path}: {reason(error)}") from error
    if not exists:
        return {}
    if not regular:
        # A folder, or a device such as /dev/null, which the chmod to 0600 below would break.
        raise LeadloopError(f"cannot read --credentials {path}: not a regular file")
    try:
        # A saved file is a few hundred bytes; anything past the limit is another file named
        # by mistake (an export, a database), which must be neither read whole nor replaced.
        saved = json.loads(read_limited(path, CREDENTIALS_LIMIT).decode("utf-8"))
    except FileTooLarge as error:
        raise LeadloopError(
            f"cannot read --credentials {path}: {error}, so it is not a credentials file "
            "(it is left as it is)"
        ) from error
    except ValueError:  # not JSON, or not UTF-8
        return {}
    except OSError as error:
        raise LeadloopError(f"cannot read --credentials {path}: {reason(error)}") from error
    if not isinstance(saved, dict):
        return {}
    return {key: value for key, value in saved.items() if isinstance(value, str)}


def _quickstart_credentials(url: DatabaseUrl, database_url: str, path: Path) -> dict[str, str]:
    """The saved credentials when they still work, else new ones saved at `path`."""
    creds = _saved_credentials(path)
    conn = connect(url)
    try:
        ok = (
            creds.get("database_url") == database_url
            and workspaces.workspace_for_write_key(conn, creds.get("write_key", "")) == "default"
            and workspaces.workspace_for_token(conn, creds.get("admin_token", "")) == "default"
        )
        if ok:
            return creds
        now = SystemClock().now()
        with conn.transaction():
            creds = {
                "database_url": database_url,
                "write_key": workspaces.create_write_key(conn, "default", "make run", now),
                "admin_token": workspaces.create_admin_token(conn, "default", "make run", now),
            }
            # Written before the commit: a file that cannot be written rolls the credentials
            # back, which were otherwise kept with nobody holding them.
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(creds, indent=2))
                os.chmod(path, 0o600)
            except (OSError, ValueError) as error:
                raise LeadloopError(
                    f"cannot write --credentials {path}: {reason(error)}"
                ) from error
        return creds
    finally:
        conn.close()


def cmd_quickstart(args: argparse.Namespace, settings: Settings) -> int:
    """What `make run` calls: credentials for `default` (created once, reused) and serve."""
    from leadloop.app import prepare_database

    listening = _listen(settings.host, settings.port)  # before credentials are made for it
    path = Path(args.credentials)
    try:
        url = DatabaseUrl.parse(settings.database_url)
        prepare_database(url, SystemClock())
        creds = _quickstart_credentials(url, settings.database_url, path)
    except BaseException:
        listening.close()
        raise
    base = f"http://{settings.host}:{settings.port}"

    def banner() -> None:
        print(
            "\n".join(
                [
                    "",
                    "leadloop is running",
                    f"  tracking API   {base}/v1/batch   (Segment spec)",
                    f"  admin API      {base}/api/v1/docs",
                    f"  dashboard      {base}/dashboard   (metrics; paste the admin token)",
                    f"  health         {base}/healthz",
                    f"  database       {settings.database_url}",
                    f"  playbook       {settings.playbook or '(none)'}",
                    f"  write key      {creds['write_key']}",
                    f"  admin token    {creds['admin_token']}",
                    f"  (saved in {path}; Ctrl-C stops)",
                    "",
                ]
            ),
            flush=True,
        )

    return _serve(settings, manual_clock=args.clock == "manual", banner=banner, listening=listening)


def _host(raw: str) -> str:
    """An address or host name: DNS names stop at 253 characters."""
    if not raw or len(raw) > 253 or not raw.isprintable():
        raise argparse.ArgumentTypeError("expected an address or a host name")
    return raw


def _port(raw: str) -> int:
    try:
        return port_number(raw.strip(), "--port")
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _given(what: str) -> Callable[[str], str]:
    """An option that falls back to the environment (or a default file) when left out: given
    empty, it was read as left out, and the environment's database (or `./leadloop.db`,
    created) or playbook used, or a path to the current folder."""

    def given(raw: str) -> str:
        if not raw:
            raise argparse.ArgumentTypeError(f"empty: give {what}, or leave the option out")
        return raw

    return given


LABEL_LIMIT = 200


def label(raw: str) -> str:
    """A workspace id or a credential's name: printed back in lists and logs, so one line of
    visible text, as the playbook's `workspace` (non-empty, no surrounding spaces)."""
    if not raw or raw != raw.strip():
        raise argparse.ArgumentTypeError("must be non-empty, without surrounding spaces")
    if len(raw) > LABEL_LIMIT:
        raise argparse.ArgumentTypeError(f"at most {LABEL_LIMIT} characters, got {len(raw):,}")
    if not raw.isprintable():
        raise argparse.ArgumentTypeError("control characters are not allowed")
    return raw


def row_id(raw: str) -> int:
    """A row id: a positive integer that both databases can hold (a 64-bit signed integer)."""
    if not whole_number(raw):
        raise argparse.ArgumentTypeError(f"expected a row id in digits 0-9, got {raw[:40]!r}")
    if len(raw) > 19 or not 0 < int(raw) < 2**63:  # `int` refuses past 4,300 digits
        raise argparse.ArgumentTypeError(f"expected a row id from 1 to {2**63 - 1}")
    return int(raw)


def one_line(message: str) -> str:
    """An error as one line: drivers' messages (psycopg's "Is the server running...?") span
    several, and stderr's last line is what scripts and logs keep. Other control characters
    (in a path the message quotes) are shown escaped, not sent to the terminal."""
    lines = (escaped(line.strip()) for line in message.replace("\r\n", "\n").split("\n"))
    return clipped("; ".join(line for line in lines if line))


ERROR_LIMIT = 800


def clipped(message: str) -> str:
    """At most about `ERROR_LIMIT` characters: a message that quotes the value it refuses (a
    path, a URL, a choice) would otherwise be as long as that value, a 100,000-character line
    whose end, which says what was wrong, nobody reads. Its middle goes."""
    if len(message) <= ERROR_LIMIT:
        return message
    half = ERROR_LIMIT // 2
    cut = len(message) - 2 * half
    return f"{message[:half]}…({cut:,} characters cut)…{message[-half:]}"


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors quote the value too (`invalid choice: '...'`); sub-parsers are
    made of the parent's class, so every command's are clipped."""

    def error(self, message: str) -> NoReturn:
        super().error(clipped(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="leadloop",
        description="Event-driven marketing automation: ingest, CDP, scoring, journeys, conversions.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--database-url",
            type=_given("a database URL"),
            help="sqlite:///path or postgresql://... (default: $LEADLOOP_DATABASE_URL "
            "or sqlite:///./leadloop.db)",
        )

    def serve_args(p: argparse.ArgumentParser) -> None:
        db_arg(p)
        p.add_argument("--host", type=_host, help="address to bind (default 127.0.0.1)")
        p.add_argument("--port", type=_port, help="port (default 8080)")
        p.add_argument(
            "--playbook",
            type=_given("a playbook path"),
            help="playbook file or folder to apply at start",
        )
        p.add_argument(
            "--clock",
            choices=["system", "manual"],
            default="system",
            help="manual: time moves only by POST /api/v1/clock/advance (for sandboxes)",
        )

    p = sub.add_parser("serve", help="run the API, the processor and timers in one process")
    serve_args(p)
    p.add_argument(
        "--no-processor",
        action="store_true",
        help="serve the APIs only (with `leadloop worker` processes doing the processing)",
    )
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser(
        "quickstart", help="create or reuse `default` credentials, print them, serve"
    )
    serve_args(p)
    p.add_argument(
        "--credentials",
        type=_given("a credentials file path"),  # `Path("")` would be the current folder
        default=".leadloop/credentials.json",
        help="where to keep them",
    )
    p.set_defaults(handler=cmd_quickstart)

    p = sub.add_parser("worker", help="run only the processor and timers (PostgreSQL deployments)")
    db_arg(p)
    p.add_argument("--playbook", type=_given("a playbook path"), help="playbook file or folder")
    p.set_defaults(handler=cmd_worker)

    p = sub.add_parser("migrate", help="apply pending database migrations")
    db_arg(p)
    p.set_defaults(handler=cmd_migrate)

    for noun, handler, what in (
        ("keys", cmd_keys_create, "write key (tracking API)"),
        ("tokens", cmd_tokens_create, "admin token (admin API)"),
    ):
        group = sub.add_parser(noun, help=f"create, list and revoke credentials: {what}")
        group.set_defaults(noun=noun)
        gsub = group.add_subparsers(dest="action", metavar="ACTION", required=True)
        c = gsub.add_parser("create", help=f"new {what}, printed as the last line")
        db_arg(c)
        c.add_argument(
            "--workspace", type=label, default="default", help="workspace (default: default)"
        )
        c.add_argument("--name", type=label, default=noun[:-1], help="a label to recognise it by")
        c.add_argument(
            "--create-workspace", action="store_true", help="create the workspace if missing"
        )
        c.set_defaults(handler=handler)
        c = gsub.add_parser("list", help=f"every {what} by id, name and workspace (no secrets)")
        db_arg(c)
        c.add_argument("--workspace", type=label, help="only this workspace's")
        c.add_argument("--json", action="store_true", help="as JSON")
        c.set_defaults(handler=cmd_credentials_list)
        c = gsub.add_parser(
            "revoke", help=f"delete a {what}; a running engine refuses it within seconds"
        )
        db_arg(c)
        c.add_argument(
            "id", help=f"its id from `{noun} list` (8+ characters), or the secret itself"
        )
        c.set_defaults(handler=cmd_credentials_revoke)

    from leadloop import cli_extra

    cli_extra.register(sub, db_arg)
    from leadloop.journeys import cli as journeys_cli

    journeys_cli.register(sub, db_arg)
    from leadloop.analytics import cli as analytics_cli

    analytics_cli.register(sub, db_arg)
    from leadloop.scoring.predictive import cli as predict_cli

    predict_cli.register(sub, db_arg)
    from leadloop.log import cli as events_cli

    events_cli.register(sub, db_arg)
    from leadloop.personalization import copy_cli

    copy_cli.register(sub, db_arg)
    from leadloop.scoring import cli as profiles_cli

    profiles_cli.register(sub, db_arg)
    from leadloop.storage import cli as storage_cli

    storage_cli.register(sub, db_arg)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        code = handler(args, _settings(args))
        sys.stdout.flush()  # here, where a reader gone away is caught below
        return code
    except LeadloopError as exc:
        print(f"leadloop: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader stopped reading (`leadloop outbox list | head`): end quietly, as other
        # command-line tools do, instead of a traceback and a second one at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
