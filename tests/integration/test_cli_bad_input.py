"""Every CLI command given bad input: one line on stderr naming the argument or file, a non-zero
status, no traceback, and the database as it was.

In-process (`main(argv)`) so that the table stays fast; `test_cli.py` runs the real subprocess.
An unexpected exception propagates and fails the case, which is the "no traceback" check."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from leadloop.cli import main
from leadloop.storage.db import DatabaseUrl, connect

BIG = "x" * 100_000
PLAYBOOK = "examples/playbook.yaml"
TABLES = ("workspaces", "write_keys", "admin_tokens", "playbooks", "outbox")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        status = main(list(argv))
    except SystemExit as stop:  # argparse's usage errors
        status = int(stop.code or 0)
    return status, capsys.readouterr().err


def counts(url: str) -> dict[str, int]:
    conn = connect(DatabaseUrl.parse(url))
    try:
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table}")[0][0] for table in TABLES}
    finally:
        conn.close()


@pytest.fixture
def db(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", sqlite_url)
    assert run(capsys, "playbook", "apply", PLAYBOOK)[0] == 0
    return sqlite_url


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "binary").write_bytes(b"\x00\x01\xff\xfe")
    (tmp_path / "folder").mkdir()
    (tmp_path / "spend.csv").write_text("date,source,amount,currency\n2026-01-01,meta,10,USD\n")
    (tmp_path / "v6.yaml").write_text(
        'version: 1\nwebhooks:\n  - {id: sales, url: "http://[::1/hook", secret: s}\n'
    )
    (tmp_path / "smtp.yaml").write_text(
        'version: 1\nchannels:\n  email: {smtp_url: "smtp://[::1"}\n'
    )
    (tmp_path / "profile.json").write_text('{"userId": "u1", "traits": {}}')
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "nan.json").write_text('{"userId": "u1", "traits": {"a": NaN}}')
    (tmp_path / "lines.ndjson").write_text('{"type": "track", "event": "A"}\n{oops\n')
    (tmp_path / "far.ndjson").write_text('{"type": "track", "event": "A", "wait": 1e308}\n')
    (tmp_path / "not.db").write_bytes(b"not a database, " * 100)
    with (tmp_path / "huge.json").open("wb") as huge:  # sparse: 200 MB that take no disk
        huge.truncate(200 * 1024 * 1024)
    return tmp_path


# (argv, words the one error line must contain); `{tmp}` is the files fixture's folder.
CASES = [
    (["keys", "create", "--name", ""], "--name"),
    (["keys", "create", "--workspace", BIG], "--workspace"),
    (["tokens", "create", "--name", "a\nb"], "--name"),
    (["serve", "--port", "-1"], "--port"),
    (["quickstart", "--port", "http"], "--port"),
    (["serve", "--host", "a..b", "--port", "1"], "cannot listen on a..b"),
    (["quickstart", "--host", BIG], "--host"),
    (["worker", "--database-url", "mysql://x"], "unsupported database URL"),
    # An empty option was no option: the environment's database (or ./leadloop.db, created) was
    # used, and the environment's playbook (or none); an empty LEADLOOP_DATABASE_URL is refused.
    (["migrate", "--database-url", ""], "--database-url"),
    (["keys", "create", "--database-url=", "--create-workspace"], "--database-url"),
    (["serve", "--playbook", "", "--host", "a..b"], "--playbook"),
    (["worker", "--playbook", "", "--database-url", "mysql://x"], "--playbook"),
    # `Path("")` is the current folder: "cannot read --credentials .: not a regular file".
    (["quickstart", "--credentials", "", "--host", "a..b"], "--credentials: empty"),
    (["migrate", "--database-url", "postgresql://[::1"], "malformed database URL"),
    (["migrate", "--database-url", "sqlite:///{tmp}/not.db"], "not.db"),
    # NUL: SQLite's open raised ValueError (a traceback); libpq cut the URL there, so
    # `postgresql://…/prod\0x` connected to `prod`.
    (["migrate", "--database-url", "sqlite:///{tmp}/a\x00b.db"], "database URL"),
    (["migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/x\x00y"], "database URL"),
    (["migrate", "--database-url", "sqlite:///{tmp}/folder"], "folder"),
    # The commands that read an existing database looked the file up first, and raised.
    (["explain", "u1", "--database-url", "sqlite:///{tmp}/" + "n" * 300], "File name too long"),
    (["outbox", "list", "--database-url", "sqlite:///{tmp}/" + "n" * 300], "File name too long"),
    (["events", "parked", "--database-url", "sqlite:///{tmp}/" + "n" * 300], "File name too long"),
    (["events", "redrive", "٣"], "id"),
    (["events", "redrive", "9" * 30], "id"),
    (["events", "redrive", "--all", "--wait", "9" * 5000], "--wait"),
    # `Path("")` is the current folder: "cannot read : Is a directory" named nothing.
    (["spend", "import", ""], "no file given (it is empty)"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", ""], "--profile: no file given"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--events", ""],
     "--events: no file given"),
    # A path's control characters reached the terminal as they were: an escape sequence was
    # run, a NUL written (a name of a playbook file was already shown escaped).
    (["spend", "import", "{tmp}/a\x1b[2Jb.csv"], "a\\x1b[2Jb.csv: No such file"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/p\x00.json"], "p\\x00.json"),
    (["explain", "u1", "--database-url", "sqlite:///{tmp}/a\rb/x.db"], "a\\rb/x.db"),
    # Echoed back whole: a 100,000-character line, the rest of the message lost at its end.
    (["migrate", "--database-url", BIG], "use sqlite:///path or postgresql://"),
    (["migrate", "--database-url", "sqlite:///x.db?" + BIG], "only synchronous=NORMAL|FULL"),
    (["outbox", "list", "--status", BIG], "(choose from"),
    (["playbook", "validate", BIG], "File name too long"),
    (["playbook", "diff", "{tmp}/" + BIG], "File name too long"),
    (["spend", "import", "{tmp}/" + BIG], "File name too long"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/" + BIG], "File name too long"),
    (["migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/x"], "refused; Is the server running"),
    # A host name IDNA cannot encode (an empty label, one past 63 characters, a format
    # character): the driver's resolver raised UnicodeError, a traceback.
    (["migrate", "--database-url", "postgresql://nobody@a..b/x"], "cannot connect to PostgreSQL"),
    (["outbox", "list", "--database-url", "postgresql://" + "h" * 64 + "/x"], "label too long"),
    (["explain", "u1", "--database-url", "postgresql://\u202e/x"], "cannot connect to PostgreSQL"),
    (["playbook", "validate", "{tmp}/missing.yaml"], "missing.yaml"),
    (["playbook", "diff", "{tmp}/binary"], "binary"),
    (["playbook", "apply", "{tmp}/folder"], "folder"),
    (["playbook", "validate", "{tmp}/v6.yaml"], "url"),  # urlsplit raised on the bracket
    (["playbook", "validate", "{tmp}/smtp.yaml"], "smtp_url"),
    # A name longer than the system takes: stat() raised ENAMETOOLONG, a traceback.
    (["playbook", "validate", "{tmp}/" + "n" * 300], "File name too long"),
    (["playbook", "diff", "{tmp}/" + "n" * 300], "File name too long"),
    (["backtest", "--playbook", "{tmp}/" + "n" * 300], "File name too long"),
    (["copy", "variants", "{tmp}/" + "n" * 300, "--template", "guide"], "File name too long"),
    (["explain", BIG], "identifier"),
    (["explain", " "], "identifier"),
    (["explain", "x", "--workspace", BIG], "--workspace"),
    (["explain", "x", "--model", ""], "--model"),
    (["outbox", "list", "--status", "lost"], "--status"),
    (["outbox", "replay", "--id", "-1"], "--id"),
    (["outbox", "replay", "--id", "9" * 30], "--id"),
    (["outbox", "replay", "--id", "one"], "--id"),
    # Python's `int` reads these as numbers: a typo named another row (or count, or port).
    (["outbox", "replay", "--id", "٣"], "--id"),
    (["outbox", "replay", "--id", " 3"], "--id"),
    (["outbox", "replay", "--id", "+3"], "--id"),
    (["outbox", "replay", "--id", "1_0"], "--id"),
    (["outbox", "replay", "--id", "9" * 5000], "--id"),
    (["copy", "variants", PLAYBOOK, "--template", "guide", "--count", "9" * 5000], "--count"),
    (["copy", "variants", PLAYBOOK, "--template", "guide", "--count", "٣"], "--count"),
    (["copy", "variants", PLAYBOOK, "--template", "guide", "--count", "+3"], "--count"),
    (["copy", "variants", PLAYBOOK, "--template", "guide", "--count", "1_0"], "--count"),
    (["serve", "--port", "٨٠٨٠"], "--port"),
    (["serve", "--port", "²"], "--port"),
    (["conversions", "list", "--destination", BIG], "--destination"),
    (["spend", "import", "{tmp}/spend.csv", "--workspace", BIG], "--workspace"),
    (["spend", "import", "{tmp}/spend.csv", "--workspace", ""], "--workspace"),
    (["conversions", "replay", "--destination", ""], "--destination"),
    (["metrics", "--since", BIG], "--since"),
    (["metrics", "--until", "2026-11-31"], "--until"),
    (["metrics", "--workspace", BIG], "--workspace"),
    (["backtest", "--playbook", PLAYBOOK, "--since", "2024-02-30"], "--since"),
    (["backtest", "--playbook", PLAYBOOK, "--since", "10000-01-01"], "--since"),
    (["backtest", "--playbook", PLAYBOOK, "--stage", BIG], "--stage"),
    (["backtest", "--playbook", "{tmp}/missing"], "missing"),
    # An outcome no event can have counted nothing and printed a table as if it were a result.
    (["backtest", "--playbook", PLAYBOOK, "--outcome", ""], "--outcome"),
    (["backtest", "--playbook", PLAYBOOK, "--outcome", " "], "--outcome"),
    (["backtest", "--playbook", PLAYBOOK, "--outcome", " Deal Won"], "--outcome"),
    (["backtest", "--playbook", PLAYBOOK, "--outcome", "Deal\nWon"], "--outcome"),
    (["backtest", "--playbook", PLAYBOOK, "--outcome", "Deal\x1b[2JWon"], "--outcome"),
    (["backtest", "--playbook", PLAYBOOK, "--outcome", "x" * 40_000], "--outcome"),
    # An empty --since was no bound at all; a long one was echoed back whole.
    (["backtest", "--playbook", PLAYBOOK, "--since", ""], "--since"),
    (["backtest", "--playbook", PLAYBOOK, "--since", BIG], "--since"),
    (["backtest", "--playbook", PLAYBOOK, "--since", "2024-01-01\x00"], "--since"),
    (["replay"], "--yes"),
    (["bench", "nothing"], "name"),
    # A benchmark's sizes and durations: `--events -1` divided by zero, a traceback.
    (["bench", "scoring", "--events", "-1"], "--events"),
    (["bench", "scoring", "--samples", "0"], "--samples"),
    (["bench", "conversions", "--parallel", "0"], "--parallel"),
    (["bench", "conversions", "--engine-people", "-1"], "--engine-people"),
    (["bench", "conversions", "--seconds", "nan"], "--seconds"),
    (["bench", "ingest", "--sustained-rate", "-5"], "--sustained-rate"),
    (["bench", "journeys", "--due", "0"], "--due"),
    (["bench", "journeys", "--late-seconds", "inf"], "--late-seconds"),
    (["bench", "channels", "--emails", "-3"], "--emails"),
    # Other scripts' digits: `int` reads "٣" as 3 (a benchmark of 3 events divided by zero) and
    # "²" raises. The unknown last option makes argparse refuse even when a size is (wrongly)
    # accepted, so no benchmark starts here: only the message tells the two apart.
    (["bench", "scoring", "--events", "\u0663", "--refuse"], "--events"),
    (["bench", "scoring", "--profiles", "\u00b2", "--refuse"], "--profiles"),
    (["bench", "conversions", "--parallel", "\uff14", "--refuse"], "--parallel"),
    (["bench", "journeys", "--due", "\u0663", "--refuse"], "--due"),
    (["bench", "journeys", "--sizes", "10,\u0663", "--refuse"], "--sizes"),
    (["bench", "journeys", "--late-rates", "\u0663", "--refuse"], "--late-rates"),
    (["bench", "channels", "--emails", "\u0663", "--refuse"], "--emails"),
    (["bench", "bandit", "--sends", "\u0663", "--refuse"], "--sends"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/folder"], "--profile"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/binary"], "--profile"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/list.json"], "--profile"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/deep.json"], "--profile"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/nan.json"], "--profile"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/huge.json"], "limit of 512,000"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--start", "x"], "--start"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--start", ""], "--start"),
    # The engine reads an empty playbook as none: the simulation ran, and nobody entered.
    (["simulate", "--playbook", "", "--profile", "{tmp}/profile.json"], "--playbook"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--start", BIG], "--start"),
    (["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--horizon", BIG], "--horizon"),
    (
        ["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--horizon", "-1d"],
        "--horizon",
    ),
    # `\d` read other scripts' digits: "٣d" was a horizon of 3 days.
    (
        ["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json", "--horizon", "\u0663d"],
        "--horizon",
    ),
    (
        ["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json",
         "--events", "{tmp}/lines.ndjson"],
        "lines.ndjson:2",
    ),
    (
        ["simulate", "--playbook", PLAYBOOK, "--profile", "{tmp}/profile.json",
         "--events", "{tmp}/far.ndjson"],
        "event 1",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(
    db: str, files: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    before = counts(db)
    status, err = run(capsys, *(arg.replace("{tmp}", str(files)) for arg in argv))
    assert status != 0
    last = err.strip().splitlines()[-1]
    assert words in last, err
    assert len(last) < 1_000, "the error echoes a huge argument back"
    assert counts(db) == before


NUL_CASES = [
    (["explain", "p\x00x"], "identifier"),
    (["spend", "import", "{tmp}/spend.csv", "--workspace", "w\x00"], "--workspace"),
    (["metrics", "--workspace", "w\x00"], "--workspace"),
    (["metrics", "--until", "2026-11-01\x00"], "--until"),
    (["backtest", "--playbook", PLAYBOOK, "--outcome", "Deal\x00Won"], "--outcome"),
]


@pytest.mark.parametrize(("argv", "words"), NUL_CASES, ids=[c[0][0] for c in NUL_CASES])
def test_nul_is_refused_as_the_argument_on_every_backend(
    backend_url: str,
    files: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    words: str,
) -> None:
    """PostgreSQL text cannot hold NUL, so no stored id has one: the driver's error (with the
    SQL it ran) was the answer there, and SQLite looked the id up."""
    monkeypatch.setenv("LEADLOOP_DATABASE_URL", backend_url)
    assert run(capsys, "playbook", "apply", PLAYBOOK)[0] == 0
    before = counts(backend_url)
    status, err = run(capsys, *(arg.replace("{tmp}", str(files)) for arg in argv))
    last = err.strip().splitlines()[-1]
    assert status == 2
    assert words in last, err
    assert "SELECT" not in err
    assert counts(backend_url) == before


@pytest.mark.parametrize(
    "credentials", ["{tmp}/binary/c.json", "{tmp}/" + "n" * 300, "{tmp}/c\x00.json"]
)
def test_quickstart_that_cannot_keep_its_credentials_makes_none(
    db: str, files: Path, capsys: pytest.CaptureFixture[str], credentials: str
) -> None:
    """Under a file, a name too long, a NUL: the write key and admin token were created and
    committed before the write failed (or a traceback came first), left in the database with
    nobody holding them."""
    with socket.socket() as probe:  # a port free now: quickstart binds it before the file
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    before = counts(db)
    path = credentials.replace("{tmp}", str(files))
    status, err = run(capsys, "quickstart", "--port", port, "--credentials", path)
    assert status != 0
    assert "--credentials" in err.strip().splitlines()[-1], err
    assert counts(db) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["playbook", "validate", ""],
        ["playbook", "apply", ""],
        ["backtest", "--playbook", ""],
        ["copy", "variants", "", "--template", "guide"],
    ],
)
def test_an_empty_playbook_path_is_refused_not_the_current_folder(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """`Path("")` is `.`: run where playbooks are, an empty argument validated (or applied)
    the current folder's."""
    monkeypatch.chdir(Path(PLAYBOOK).resolve().parent)
    before = counts(db)
    status, err = run(capsys, *argv)
    assert status != 0
    assert "no playbook path given" in err.strip().splitlines()[-1], err
    assert counts(db) == before


@pytest.mark.parametrize("name", ["a\nb.yaml", "a\x1b[2Jb.yaml", "a\rb.yaml"])
def test_a_playbook_name_with_control_characters_is_shown_escaped_on_one_line(
    db: str, files: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A line break in the name split the error in two (the last line, which scripts keep,
    named half a file); an escape sequence reached the terminal."""
    for command in (["playbook", "validate"], ["playbook", "diff"]):
        status, err = run(capsys, *command, str(files / name))
        assert status != 0
        assert len(err.strip().splitlines()) == 1, err
        assert "no such file or folder" in err and repr(name)[1:-1] in err, err
