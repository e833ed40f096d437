"""`leadloop profiles list`: the profiles of one scoring model by stage and score, as a table,
CSV (safe to open in a spreadsheet) or JSON lines, on both backends; a misspelt model or stage
is an error naming what there is."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest

from leadloop.cli import main
from tests.contract.conftest import EXAMPLE_PLAYBOOK, make_harness
from tests.contract.test_scoring_pipeline import seed_lead

HOSTILE = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def db(backend_url: str) -> Iterator[str]:
    """vp-1 (52, MQL); eng-1 (2, subscriber); a user id a spreadsheet would run as a formula,
    with a senior title (15, lead)."""
    h = make_harness(backend_url, EXAMPLE_PLAYBOOK)
    try:
        seed_lead(h)
        h.send({"type": "identify", "userId": "eng-1", "traits": {"title": "Engineer"}})
        h.send({"type": "page", "userId": "eng-1", "properties": {"path": "/"}})
        h.send({"type": "identify", "userId": HOSTILE, "traits": {"title": "Director"}})
        h.settle()
    finally:
        h.engine.stop()
    yield backend_url


def _run(capsys: pytest.CaptureFixture[str], db: str, *args: str) -> tuple[int, str, str]:
    code = main(["profiles", "list", "--database-url", db, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_csv_lists_the_filtered_profiles_and_defuses_formulas(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, db, "--model", "lead", "--format", "csv")
    assert code == 0 and "3 profiles of model lead listed" in err, err
    rows = list(csv.DictReader(io.StringIO(out)))
    by_user = {r["user_id"]: r for r in rows}
    assert set(by_user) == {"vp-1", "eng-1", "'" + HOSTILE}, "the formula starts with '"
    vp = by_user["vp-1"]
    assert (vp["score"], vp["fit"], vp["engagement"], vp["stage"]) == ("52", "25", "27", "MQL")
    assert vp["email"] == "vp-1@acme.test" and vp["last_activity"].endswith("Z")
    assert by_user["eng-1"]["stage"] == "subscriber"

    code, out, _ = _run(capsys, db, "--model", "lead", "--format", "csv", "--stage", "mql,lead")
    assert code == 0
    assert sorted(r["user_id"] for r in csv.DictReader(io.StringIO(out))) == [
        "'" + HOSTILE,
        "vp-1",
    ]
    code, out, _ = _run(
        capsys, db, "--model", "lead", "--format", "csv", "--min-score", "2", "--max-score", "15"
    )
    assert sorted(r["user_id"] for r in csv.DictReader(io.StringIO(out))) == [
        "'" + HOSTILE,
        "eng-1",
    ]


def test_json_lines_and_the_table(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, db, "--model", "lead", "--format", "json", "--min-score", "50")
    assert code == 0
    items = [json.loads(line) for line in out.splitlines()]
    assert [(i["score"], i["stage"]) for i in items] == [(52, "MQL")]
    assert {"type": "user_id", "value": "vp-1"} in items[0]["identities"]

    code, out, _ = _run(capsys, db, "--model", "lead", "--stage", "MQL")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "id", "score", "fit", "engagement", "stage", "last_activity",
        "email", "phone", "user_id", "external_id",
    ]  # fmt: skip
    assert len(lines) == 2 and " 52 " in lines[1] and " MQL " in lines[1] and "vp-1" in lines[1]


def test_bad_filters_name_what_there_is(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, db, "--model", "leads")
    assert code == 2 and "no scoring model 'leads'" in err and "(its models: lead)" in err, err
    code, _, err = _run(capsys, db, "--model", "lead", "--stage", "MLQ")
    assert code == 2 and "'MLQ' is not a stage of model 'lead'" in err and "MQL" in err, err
    code, _, err = _run(capsys, db, "--model", "lead", "--min-score", "9", "--max-score", "1")
    assert code == 2 and "--min-score is above --max-score" in err, err
    for bad in (("--min-score", "1e3"), ("--max-score", "+5"), ("--stage", "MQL,,SQL")):
        with pytest.raises(SystemExit) as exc:
            main(["profiles", "list", "--database-url", db, "--model", "lead", *bad])
        assert exc.value.code == 2, bad
        assert "argument" in capsys.readouterr().err, bad
