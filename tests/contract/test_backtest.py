"""`leadloop backtest` replays history through other rules and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadloop.cli import main
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness
from tests.contract.test_scoring_pipeline import seed_lead


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
    code = main(
        [
            "backtest",
            "--playbook",
            EXAMPLE_PLAYBOOK,
            "--since",
            "last tuesday",
            "--database-url",
            scoring_harness.engine.settings.database_url,
        ]
    )
    assert code == 2
