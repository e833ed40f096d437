"""`leadloop backtest` replays history through other rules and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.cli import main
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness
from tests.contract.test_scoring_pipeline import score, seed_lead


def test_backtest_compares_rules_without_changing_anything(
    scoring_harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = scoring_harness
    seed_lead(h, "vp-1")
    seed_lead(h, "vp-2")
    h.send({"type": "track", "userId": "vp-1", "event": "Deal Won"})
    h.send({"type": "page", "userId": "intern", "properties": {"path": "/pricing"}})
    h.settle()
    stricter = tmp_path / "strict.yaml"
    stricter.write_text(Path(EXAMPLE_PLAYBOOK).read_text().replace("at: 50", "at: 60"))
    before = h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2")
    ledger_before = h.sql("SELECT COUNT(*) FROM score_ledger")

    code = main(
        ["backtest", "--playbook", str(stricter), "--database-url", h.engine.settings.database_url]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| current") or line.startswith("| new")
    ]
    current = next(r for r in rows if r.startswith("| current"))
    new = next(r for r in rows if r.startswith("| new"))
    cells = lambda row: [c.strip() for c in row.strip("|").split("|")]  # noqa: E731
    # Current rules: both VPs reached MQL (52 points), one of them won a deal.
    assert cells(current)[3] == "2" and cells(current)[5] == "1" and cells(current)[6] == "50.0%"
    # At 60 nobody qualifies with 52 points.
    assert cells(new)[3] == "0"
    assert h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2") == before
    assert h.sql("SELECT COUNT(*) FROM score_ledger") == ledger_before


def test_backtest_rejects_a_bad_date(
    scoring_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["backtest", "--playbook", EXAMPLE_PLAYBOOK, "--since", "last tuesday"]
    with pytest.raises(SystemExit) as stop:  # an argparse usage error
        main([*argv, "--database-url", scoring_harness.engine.settings.database_url])
    assert stop.value.code == 2
    assert "--since: expected a date, YYYY-MM-DD" in capsys.readouterr().err


def test_backtest_says_when_and_counts_from_since(
    scoring_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Median days from first event to the stage, the month-by-month table, and `--since`
    counting only entries from that date (the history before it still replayed)."""
    h = scoring_harness  # the manual clock starts at 2027-01-15 08:00 UTC
    seed_lead(h, "fast")  # MQL on its first day, in January
    h.send(
        {"type": "identify", "userId": "slow", "traits": {"title": "VP Sales"}},
        {"type": "group", "userId": "slow", "groupId": "acme-slow", "traits": {"employees": 500}},
        {"type": "page", "userId": "slow", "properties": {"path": "/"}},
    )
    h.settle()
    h.advance(20 * 86400)  # 2027-02-04: the rest of the way to 52, in February
    h.send(
        {"type": "page", "userId": "slow", "properties": {"path": "/pricing"}},
        {"type": "track", "userId": "slow", "event": "Lead Magnet Downloaded"},
    )
    h.settle()

    def backtest(*options: str) -> list[str]:
        url = h.engine.settings.database_url
        code = main(["backtest", "--playbook", EXAMPLE_PLAYBOOK, "--database-url", url, *options])
        assert code == 0
        return capsys.readouterr().out.splitlines()

    out = backtest()
    assert "| current | lead | " in "\n".join(out)
    row = next(line for line in out if line.startswith("| current | lead"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (cells[3], cells[4], cells[5]) == ("2", "20.0", "0")  # of days 0 and 20, the upper
    assert "| month | current:lead | new:lead |" in out
    assert "| 2027-01 | 1 | 1 |" in out and "| 2027-02 | 1 | 1 |" in out

    out = backtest("--since", "2027-02-01")
    assert "stage 'MQL', outcome 'Deal Won', since 2027-02-01" in out
    row = next(line for line in out if line.startswith("| current | lead"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert (cells[3], cells[4]) == ("1", "20.0")
    assert "| 2027-02 | 1 | 1 |" in out
    assert not any(line.startswith("| 2027-01") for line in out)


def test_backtest_stage_ignores_case_and_an_unknown_one_is_an_error(
    scoring_harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stage names are case-insensitive in the playbook, so `--stage mql` is the models' `MQL`,
    even when the live playbook and the one tried spell it differently."""
    h = scoring_harness
    seed_lead(h, "vp-1")
    h.send({"type": "track", "userId": "vp-1", "event": "Deal Won"})
    h.settle()
    lowered = tmp_path / "lowered.yaml"
    lowered.write_text(Path(EXAMPLE_PLAYBOOK).read_text().replace("name: MQL", "name: mql"))
    url = h.engine.settings.database_url

    def backtest(playbook: str, stage: str) -> tuple[int, list[str], str]:
        code = main(["backtest", "--playbook", playbook, "--stage", stage, "--database-url", url])
        captured = capsys.readouterr()
        return code, captured.out.splitlines(), captured.err

    def reached(out: list[str]) -> dict[str, tuple[str, str]]:
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in out]
        return {r[0]: (r[3], r[5]) for r in rows if r[0] in ("current", "new")}

    code, exact, _ = backtest(EXAMPLE_PLAYBOOK, "MQL")
    assert code == 0 and reached(exact) == {"current": ("1", "1"), "new": ("1", "1")}
    for playbook, stage in ((EXAMPLE_PLAYBOOK, "mql"), (str(lowered), "Mql")):
        code, out, err = backtest(playbook, stage)
        assert code == 0, err
        assert reached(out) == reached(exact), (playbook, stage)
    code, out, _ = backtest(EXAMPLE_PLAYBOOK, "mql")
    assert "stage 'MQL', outcome 'Deal Won'" in out  # the stage as the playbook spells it

    before = h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2")
    code, out, err = backtest(EXAMPLE_PLAYBOOK, "Hot")
    assert code == 2 and out == []
    assert "--stage 'Hot' is not a stage of the playbook's models" in err
    assert "lead: subscriber, lead, MQL" in err  # the stages it has are listed
    assert h.sql("SELECT profile_id, model, state FROM scores ORDER BY 1, 2") == before


def test_one_event_dated_far_ahead_does_not_move_the_replay_end(
    scoring_harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    """Clients date their events: one dated the year 9000 (a device clock gone wrong) made the
    replay run to then, so a lead it qualified entered the stage in 9000 in the backtest while
    the engine, which clamps event times to its own clock, had it qualify on receipt."""
    h = scoring_harness  # the manual clock starts at 2027-01-15 08:00 UTC
    seed_lead(h, "vp-1")
    h.send(
        {"type": "identify", "userId": "late", "traits": {"title": "VP Sales"}},
        {"type": "group", "userId": "late", "groupId": "acme-late", "traits": {"employees": 500}},
        {"type": "page", "userId": "late", "properties": {"path": "/"}},
        {"type": "page", "userId": "late", "properties": {"path": "/pricing"}},
        {
            "type": "track",
            "userId": "late",
            "event": "Lead Magnet Downloaded",
            "timestamp": "9000-01-01T00:00:00Z",
        },
    )
    h.settle()
    assert score(h, "late")["stage"] == "MQL"
    url = h.engine.settings.database_url
    code = main(["backtest", "--playbook", EXAMPLE_PLAYBOOK, "--database-url", url])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert "| 2027-01 | 2 | 2 |" in out
    assert not any(line.startswith("| 9000") for line in out)
