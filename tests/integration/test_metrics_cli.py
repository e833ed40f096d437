"""`leadloop metrics` on a database an engine wrote: the API's figures as tables, `--json` the
API's very body for the same window, and bad input one line that changes nothing."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.contract.conftest import CHANNEL_ENV, Harness
from tests.contract.journeys_helpers import flows
from tests.contract.test_journeys_holdout import HOLDOUT, signed_up
from tests.contract.test_metrics import message, metrics_response
from tests.integration.test_cli import cli

WINDOW = ("--since", "2027-01-01", "--until", "2027-01-31")
"""Around the harness's clock (2027-01-15), and ahead of the wall clock the CLI reads: the
spend days below contain neither's `now`, so both count them whole."""


@pytest.fixture(autouse=True)
def channels_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example playbook's channels set, for the engine and the CLI's subprocess alike."""
    for name, value in CHANNEL_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def shop(backend_url: str, tmp_path: Path) -> Iterator[Harness]:
    """A journey with a holdout, orders (one without a currency), messages and USD spend, on
    each backend."""
    with flows(backend_url, tmp_path, HOLDOUT) as h:
        _pids, held, treated = signed_up(h, "m", 20, 0.3)
        orders = [
            (held[0], {"revenue": 100, "currency": "usd"}),
            (treated[0], {"total": "40.50", "currency": "USD"}),
            (treated[1], {"value": 9.5}),
        ]
        h.send(
            *(
                {"type": "track", "userId": u, "event": "Order Completed", "properties": p}
                for u, p in orders
            )
        )
        h.settle()
        at = h.engine.clock.now()
        message(h, "e1", "offer", at, "sent", "opened", "clicked")
        message(h, "e2", "offer", at, "sent", "bounced")
        export = tmp_path / "spend.csv"
        export.write_text("date,source,currency,amount\n2027-01-10,meta,USD,200\n")
        assert cli(backend_url, "spend", "import", str(export)).returncode == 0
        yield h


def table(out: str, title: str) -> list[dict[str, str]]:
    """The rows of the section that starts with `title`, by column name (columns are apart by
    two spaces or more; a cell has one at most)."""
    lines = out[out.index(title) :].split("\n\n")[0].splitlines()[1:]
    head, *rows = (re.split(r"\s{2,}", line.strip()) for line in lines)
    return [dict(zip(head, row, strict=True)) for row in rows]


def test_json_is_the_apis_body_for_the_same_window(backend_url: str, shop: Harness) -> None:
    out = cli(backend_url, "metrics", "--json", *WINDOW)
    assert out.returncode == 0, out.stderr
    api = metrics_response(shop, since=WINDOW[1], until=WINDOW[3])
    assert api.status_code == 200, api.text
    assert out.stdout.encode() == api.content + b"\n"


def test_the_tables_give_each_figure_with_its_unit_and_unknowns_with_a_reason(
    backend_url: str, shop: Harness
) -> None:
    out = cli(backend_url, "metrics", *WINDOW)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith(
        "Metrics of workspace default from 2027-01-01 00:00:00 to 2027-01-31 23:59:59 UTC"
    )
    (email,) = table(text, "Messages by channel")
    assert (email["channel"], email["sent"], email["delivered"], email["clicked"]) == (
        "email",
        "2",
        "1",
        "1",
    )
    assert (email["CTR"], email["bounce rate"], email["delivery rate"]) == (
        "100.0 %",
        "50.0 %",
        "50.0 %",
    )
    (journey,) = table(text, "Journeys")
    held = int(journey["holdout entered"])
    treated = int(journey["entered"])
    assert held + treated == 20 and held and treated
    # Two treated people ordered and one held out: the journey's goal.
    assert (journey["converted"], journey["holdout converted"]) == ("2", "1")
    assert journey["lift"] == f"{100 * (2 / treated - 1 / held):+.1f} pts"
    revenue = {r["currency"]: r for r in table(text, "Revenue")}
    assert revenue["USD"]["revenue"] == "140.50 USD"
    assert revenue["XXX"]["revenue per customer"] == "9.50 XXX"
    (usd,) = table(text, "Acquisition")
    assert (usd["ad spend"], usd["new customers"], usd["CAC"]) == ("200.00 USD", "3", "66.67 USD")
    assert usd["ROAS"].startswith("unknown (orders without a currency (XXX) hold 9.50")
    funnel = table(text, "Funnel")
    assert funnel[0]["from previous"] == "–"  # the first stage has none
    assert funnel[1]["from previous"] == "unknown (nobody reached the previous stage)"


def test_a_window_with_nothing_in_it_says_so(backend_url: str, shop: Harness) -> None:
    out = cli(backend_url, "metrics", "--since", "2020-01-01", "--until", "2020-01-02")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("nothing in this window") == 5  # all but the funnel's stages
    assert "(no new customers)" not in out.stdout


def dump(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--since", "yesterday"), "--since: expected a date"),
        (("--since", "2024-02-30"), "--since: expected a date"),
        (("--until", "2026-11-01T09:00:00"), "--until: a date and time needs a zone"),
        (("--until", "nan"), "--until: expected a date"),
        (("--since", "-5"), "--since: must be between 1970"),
        (("--since", "10000-01-01"), "--since: expected a date"),
        (("--since", "2026-11-02", "--until", "2026-11-01"), "--since: must not be after until"),
        (("--since", "2000-01-01", "--until", "2026-11-01"), "at most 3660 days"),
        (("--since", ""), "--since: expected a date"),
        (("--until", "2" * 10_000), "--until: at most 40 characters, got 10,000"),
        (("--until", "2026-11-01\x1b[2J"), "--until: control characters"),
        (("--workspace", "nope"), "workspace 'nope' does not exist"),
        (("--workspace", "w" * 201), "--workspace: at most 200 characters"),
        (("--workspace", ""), "--workspace: must be non-empty"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    sqlite_url: str, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    assert cli(sqlite_url, "playbook", "apply", "examples/playbook.yaml").returncode == 0
    db = tmp_path / "leadloop.db"
    before = dump(db)
    out = cli(sqlite_url, "metrics", *args)
    assert out.returncode == 2 and out.stdout == ""
    last = out.stderr.strip().splitlines()[-1]
    assert words in last and len(last) < 300, out.stderr
    assert "Traceback" not in out.stderr
    assert dump(db) == before


def test_no_database_is_an_error_that_creates_none(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    out = cli(f"sqlite:///{db}", "metrics")
    assert out.returncode == 2 and out.stderr.startswith(f"leadloop: error: no database at {db}")
    assert len(out.stderr.splitlines()) == 1
    assert not db.exists()


def test_a_playbook_that_does_not_load_here_is_an_error_not_an_empty_funnel(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's environment sets the playbook's `${VAR}`s; a shell without them cannot
    tell the funnel's stages, and a report without them read as if nobody moved."""
    example = Path("examples/playbook.yaml").read_text()
    needs = tmp_path / "playbook.yaml"
    needs.write_text(example.replace("${LEADLOOP_SMTP_URL:-}", "${LEADLOOP_SMTP_URL}"))
    assert cli(sqlite_url, "playbook", "apply", str(needs)).returncode == 0
    monkeypatch.delenv("LEADLOOP_SMTP_URL")
    out = cli(sqlite_url, "metrics")
    assert out.returncode == 2, out.stdout
    assert "does not load here" in out.stderr and "LEADLOOP_SMTP_URL" in out.stderr
    assert len(out.stderr.splitlines()) == 1
