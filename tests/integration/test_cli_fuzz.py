"""Generated hostile command lines against every `leadloop` command, in-process (`main(argv)`),
on a database holding profiles, events, an outbox, a parked event and credentials: each ends
with status 0, 1 or 2, a failure says why on stderr without a traceback, and a command that
fails changes nothing in the database.

The commands are read from the parser `leadloop.cli.build_parser` builds, so a new command (or
option) is fuzzed without a line here. Its options get a value it expects as often as a hostile
one (NUL, 400 digits, other scripts' digits, paths that are missing, folders, `/dev/zero` or
hold a line break, impossible dates, unreachable databases), sometimes twice, beside unknown
options. Drawn deterministically, as `tests/integration/test_api_fuzz.py` (same environment
variables to draw more: a few thousand find what a default run may not). The hand-written tables (`test_cli_bad_input.py`, `test_cli.py`,
`test_cli_events.py`) say which message each case gets; this one says no case gets a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadloop import bench_cli, cli
from leadloop.cli import build_parser, main
from leadloop.errors import LeadloopError
from leadloop.log import park
from leadloop.log.model import Event
from leadloop.storage import cli as storage_cli
from leadloop.storage import workspaces
from leadloop.storage.db import DatabaseUrl, connect
from tests.integration.conftest import Api, serve_api
from tests.integration.test_api_hostile import seed

EXAMPLES = int(os.environ.get("LEADLOOP_FUZZ_EXAMPLES", "400"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("LEADLOOP_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")

# Commands that serve, process or measure until stopped (or for minutes): their command lines
# are parsed and their settings read, where most of their refusals are, and their handler
# (module, name) is replaced by one that returns. Their other refusals (a port in use,
# credentials that cannot be written, a benchmark's own options) are in test_cli_bad_input.py.
PARSE_ONLY = {
    ("serve",): (cli, "cmd_serve", "serves until stopped"),
    ("quickstart",): (cli, "cmd_quickstart", "creates credentials, then serves until stopped"),
    ("worker",): (cli, "cmd_worker", "processes until stopped"),
    ("bench",): (bench_cli, "_run", "runs a benchmark for minutes; its options are the script's"),
}
# Appended last, so that it wins over any drawn value (which is still parsed and checked):
# `events redrive` waits up to `--wait` seconds for an engine, and none runs here.
BOUNDED: dict[tuple[str, ...], list[str]] = {("events", "redrive"): ["--wait", "0"]}


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    handler: Any
    positionals: tuple[argparse.Action, ...]
    options: tuple[argparse.Action, ...]


def _commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> list[Command]:
    """Every runnable command: the leaves of the tree of sub-parsers."""
    found: list[Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.extend(_commands(child, (*words, name)))
    if found or not words:
        return found
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    return [
        Command(
            words,
            parser.get_default("handler"),
            tuple(a for a in actions if not a.option_strings),
            tuple(a for a in actions if a.option_strings),
        )
    ]


COMMANDS = _commands(build_parser())

# Values that broke parsers before (see test_api_fuzz.py), and the ones a command line adds:
# option-like words, paths that are not files, and databases that are not there. By kind, each
# kind drawn as often: one value in sixty would hardly ever be drawn in a run.
HOSTILE = {
    "size": ["", " ", "x" * 20_000, "9" * 400, "9" * 25, "x" * 64, "a..b"],
    "text": ["\x00", "a\x00b", "a\nb", "a\x1b[2Jb", "\u202e", "ǅ", "--", "-h", "-" * 3],
    "number": ["-1", "-0", "0", "+3", "1_0", " 3", "1e309", "nan", "inf", "٣", "٨٠", "１２", "²"],
    "time": [
        "999999999999999d",
        "-5m",
        "٣d",
        "1e308s",
        "2026-02-30",
        "2026-11-31",
        "10000-01-01",
        "0001-01-01",
        "2026-11-29T25:61:00Z",
        "9999-12-31T23:59:59+14:00",
    ],
    "path": ["../../etc/passwd", "/", "/dev/zero", "/dev/null", "/nonexistent/x.yaml"],
    "database": [
        "sqlite:///nonexistent/dir/x.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?synchronous=OFF",
        "sqlite:////dev/zero",
        "postgresql://nohost:1/x",
        "postgresql://nobody@127.0.0.1:1/x",
        "postgresql://[::1",
        "postgresql://nobody@a..b/x",
        "postgres://",
        "mysql://x",
    ],
}
# The kind of hostile value an option is given half the time: the one its parser reads.
KIND = {
    "database_url": "database",
    "since": "time",
    "until": "time",
    "start": "time",
    "horizon": "time",
    "id": "number",
    "wait": "number",
    "count": "number",
    "port": "number",
    "to": "path",
}
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
# Composed with a hostile tail, so that a value gets past the first check on its shape (a
# scheme, a folder, a date) and meets the next one.
PREFIXES = [
    "postgresql://",
    "postgresql://nobody@127.0.0.1:1/",
    "postgresql://nobody@",
    "sqlite:///",
    "sqlite:///{files}/",
    "{files}/",
    "{files}/folder/",
    "2026-11-01T",
    "2026-11-01 ",
    "1",
    "--",
]
UNKNOWN = ["--no-such-option", "--no-such-option=1", "-Z", "extra", "--database", "--work"]


@dataclass(frozen=True)
class Place:
    """Where an example runs: its database and the files its options may name."""

    url: str
    files: Path

    def plausible(self, action: argparse.Action) -> list[str]:
        """Values the option expects, so that a command gets past its first check as often as
        not (and then meets a hostile value in another option, or none)."""
        f = self.files
        playbooks = [PLAYBOOK, str(ROOT / "examples" / "x-education.yaml"), str(f / "other.yaml")]
        return {
            "database_url": [self.url],
            "path": playbooks,
            "playbook": playbooks,
            "profile": [str(f / "profile.json")],
            "events": [str(f / "events.ndjson"), str(f / "events.json")],
            "file": [str(f / "spend.csv")],
            "identifier": ["u1", "ada@example.com", "ADA@example.com", "nobody"],
            "id": ["1", "2", self.fingerprint()],
            "workspace": ["default", "other"],
            "name": ["site"],
            "template": ["guide", "ugc_video", "case_study"],
            "stage": ["MQL", "sql"],
            "outcome": ["Deal Won", "Signed Up"],
            "since": ["2026-11-01", "2020-01-01T00:00:00Z", "1700000000"],
            "until": ["2026-11-30", "2100-01-01"],
            "start": ["2026-11-01T09:00:00Z"],
            "horizon": ["1d", "72h", "0"],
            "model": ["lead"],
            "destination": ["meta", "google"],
            "wait": ["0"],
            "count": ["1", "3", "10"],
            "fact": ["Free for 14 days"],
            "credentials": [str(f / "credentials.json")],
            "host": ["127.0.0.1"],
            "to": [str(f / "backups" / "backup.db"), str(f / "backups" / "leadloop.db")],
            "port": ["8080"],
        }.get(action.dest, [])

    def paths(self) -> list[str]:
        f = self.files
        return [
            str(f / "missing.yaml"),
            str(f / "folder"),
            str(f / "binary"),
            str(f / "line\nbreak.yaml"),
            str(f / ("n" * 300)),
            f"sqlite:///{f}/folder",
            f"sqlite:///{f}/binary",
            f"sqlite:///{f}/missing/x.db",
        ]

    def fingerprint(self) -> str:
        return (self.files / "fingerprint").read_text()


def _value(draw: st.DrawFn, place: Place, action: argparse.Action) -> str:
    known = list(action.choices or ()) + place.plausible(action)
    if known and draw(st.integers(0, 2)) > 0:  # most values plausible: a line gets past argparse
        return str(draw(st.sampled_from(known)))
    kinds = [*HOSTILE.values(), place.paths()]
    hostile = st.one_of(*(st.sampled_from(values) for values in kinds), TEXT)
    if action.dest in KIND and draw(st.booleans()):
        hostile = st.sampled_from(HOSTILE[KIND[action.dest]])
    if draw(st.integers(0, 3)) == 0:
        prefix = draw(st.sampled_from(PREFIXES)).replace("{files}", str(place.files))
        return prefix + str(draw(hostile))
    return str(draw(hostile))


@st.composite
def command_lines(draw: st.DrawFn, place: Place) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    argv = list(command.words)
    if draw(st.integers(0, 9)) == 0:
        argv.insert(0, "-v")
    for action in command.positionals:
        if draw(st.integers(0, 9)) > 0:  # usually given: a missing one stops at argparse
            argv.append(_value(draw, place, action))
    for action in command.options:
        times = draw(st.sampled_from([1, 1, 1, 2] if action.required else [0, 0, 0, 1, 1, 2]))
        for _ in range(times):
            option = draw(st.sampled_from(action.option_strings))
            if action.nargs == 0:
                argv.append(option)
            elif draw(st.integers(0, 4)) == 0:  # `--x=-1`: argparse reads it otherwise
                argv.append(f"{option}={_value(draw, place, action)}")
            else:
                argv.extend([option, _value(draw, place, action)])
    if draw(st.integers(0, 19)) == 0:
        argv.insert(
            draw(st.integers(len(command.words), len(argv))), draw(st.sampled_from(UNKNOWN))
        )
    return [*argv, *BOUNDED.get(command.words, [])]


# -- the place ------------------------------------------------------------------------------------


def _files(folder: Path) -> Path:
    folder.mkdir()
    (folder / "folder").mkdir()
    (folder / "backups").mkdir()
    (folder / "binary").write_bytes(b"\x00\x01\xff\xfe")
    (folder / "profile.json").write_text('{"userId": "u9", "traits": {"email": "z@example.com"}}')
    (folder / "events.ndjson").write_text(
        '{"type": "track", "event": "Lead Magnet Downloaded"}\n{"wait": "2d", "type": "page"}\n'
    )
    (folder / "events.json").write_text('[{"type": "track", "event": "Signed Up"}]')
    (folder / "spend.csv").write_text(
        "date,source,amount,currency\n2026-11-01,meta,10,USD\n2026-11-02,google,12.5,USD\n"
    )
    return folder


def _seeded(url: str, files: Path) -> None:
    """Profiles and events (the example playbook scored them), dead outbox rows, a parked
    event, and credentials in two workspaces."""
    for api in serve_api(url, playbook=PLAYBOOK):
        seed(api)

        def more(c: Any, api: Api = api) -> None:
            now = api.engine.clock.now()
            seq = c.execute("SELECT MAX(seq) FROM events")[0][0]
            ids = {"seq": seq, "workspace_id": "default", "message_id": "m-parked"}
            event = Event(**ids, type="track", timestamp=now, received_at=now)
            park.park(c, event, ValueError("no rule for this event"), 3, now)
            key = workspaces.create_write_key(c, "default", "fuzz", now)
            (files / "fingerprint").write_text(workspaces.hash_secret(key)[:12])

        api.engine.writer.submit(more).result()
    # A predictive model in `other`, with too few conversions to train: `predict train` fails
    # there (status 1) after its checks, where in `default` it stops at them.
    text = (ROOT / "examples" / "x-education.yaml").read_text()
    (files / "other.yaml").write_text(text.replace("workspace: default", "workspace: other"))
    assert main(["playbook", "apply", str(files / "other.yaml"), "--database-url", url]) == 0


def _tables(url: str) -> dict[str, list[Any]]:
    """Every table's rows: what a refused command must leave as it was."""
    conn = connect(DatabaseUrl.parse(url))
    try:
        if conn.dialect == "sqlite":
            names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            names = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        return {name: sorted(map(repr, conn.execute(f"SELECT * FROM {name}"))) for (name,) in names}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A seeded SQLite database, copied for each example: a command that worked (an applied
    playbook, a revoked key, `replay --yes`) leaves the next example the same database, and a
    failing example replays alone as it ran."""
    folder = tmp_path_factory.mktemp("cli-fuzz")
    files = _files(folder / "files")
    database = folder / "seeded.db"
    _seeded(f"sqlite:///{database}", files)
    return database, files


def _restore(template: Path, database: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, database)


# -- running a command line -----------------------------------------------------------------------


def _environment(
    monkeypatch: pytest.MonkeyPatch, folder: Path, url: str, files: Path | None = None
) -> None:
    monkeypatch.chdir(folder)  # relative defaults (quickstart's credentials) land here
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", url)
    for name in ("LEADLOOP_COPY_API_BASE", "LEADLOOP_COPY_API_KEY", "LEADLOOP_COPY_MODEL"):
        monkeypatch.delenv(name, raising=False)  # `copy variants --provider openai` goes nowhere
    for module, name, _why in PARSE_ONLY.values():
        monkeypatch.setattr(module, name, lambda args, settings: 0)
    roots = [folder, *([files] if files is not None else [])]
    monkeypatch.setattr(storage_cli, "copy_database", _confined(roots))


def _confined(roots: list[Path]) -> Callable[..., Any]:
    """`backup` writes a file wherever `--to` says, and the tests run as root on machines where
    root may write anywhere: a drawn absolute path of random text (`/x`) would be created at
    the root of the file system. So the copy itself, once every check before it has passed,
    is refused outside this test's folders."""
    real = storage_cli.copy_database
    inside = [Path(os.path.realpath(root)) for root in roots]

    def copy(database: Path, target: Path, progress: Any = None) -> Any:
        folder = Path(os.path.realpath(target.absolute().parent))
        if not any(folder.is_relative_to(root) for root in inside):
            raise LeadloopError(f"(fuzz) no backup written outside the test's folders: {target}")
        return real(database, target, progress)

    return copy


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's usage errors (and --help)
        status = stop.code if isinstance(stop.code, int) else 2
    return status, capsys.readouterr().err


def _check(argv: list[str], status: int, err: str, before: Any, after: Any) -> None:
    what = repr(argv)[:600]
    assert status in (0, 1, 2), f"{what}: status {status}\n{err[-2000:]}"
    assert "Traceback" not in err, f"{what}:\n{err[-4000:]}"
    assert all(len(line) < 1_000 for line in err.splitlines()), f"{what}: echoes a huge value"
    shown = [c for c in err if unicodedata.category(c) == "Cc" and c not in "\n\t"]
    assert not shown, f"{what}: control characters reach the terminal: {err[-2000:]!r}"
    if status != 0:
        assert err.strip(), f"{what}: status {status} and nothing on stderr"
        changed = sorted(t for t in after if after[t] != before.get(t))
        assert not changed, f"{what}: failed with {status} but changed {changed}\n{err[-2000:]}"


def test_the_commands_are_found() -> None:
    """The walk reaches the leaves of the tree (or this fuzzes nothing)."""
    found = {" ".join(c.words) for c in COMMANDS}
    assert {
        "migrate",
        "keys revoke",
        "events redrive",
        "playbook apply",
        "simulate",
        "backup",
    } <= found
    handlers = {c.words: c.handler for c in COMMANDS}
    for words, (module, name, _why) in PARSE_ONLY.items():
        assert handlers[words] is getattr(module, name), words  # what is replaced is what runs


def test_no_command_line_ends_in_a_traceback_or_changes_what_it_refused(
    template: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded, files = template
    database = tmp_path / "leadloop.db"
    url = f"sqlite:///{database}"
    place = Place(url, files)
    _environment(monkeypatch, tmp_path, url, files)
    statuses: set[int] = set()

    @FUZZ
    @given(command_lines(place))
    def fuzz(argv: list[str]) -> None:
        _restore(seeded, database)
        for backup in (files / "backups").iterdir():  # each example finds no earlier backup
            backup.unlink()
        before = _tables(url)
        status, err = _run(capsys, argv)
        _check(argv, status, err, before, _tables(url))
        statuses.add(status)

    fuzz()
    assert statuses == {0, 1, 2}  # the lines drawn pass, fail and are refused


@pytest.mark.postgres
def test_on_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same, fewer, on one PostgreSQL database that commands which work change as they go
    (cloning one per example would take most of the time): its driver refuses what SQLite
    stores (NUL) and its errors span lines."""
    from tests.conftest import PG_URL, _with_db, drop_postgres_database, new_postgres_database

    name = new_postgres_database()
    try:
        url = _with_db(PG_URL, name)
        files = _files(tmp_path / "files")
        _seeded(url, files)
        place = Place(url, files)
        _environment(monkeypatch, tmp_path, url, files)

        @settings(FUZZ, max_examples=max(EXAMPLES // 5, 10))
        @given(command_lines(place))
        def fuzz(argv: list[str]) -> None:
            before = _tables(url)
            status, err = _run(capsys, argv)
            _check(argv, status, err, before, _tables(url))

        fuzz()
    finally:
        drop_postgres_database(name)
