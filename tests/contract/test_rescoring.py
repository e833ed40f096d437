"""Applying a changed model rescores every profile from the log, without re-firing actions,
and a broken playbook leaves the running one in place."""

from __future__ import annotations

from pathlib import Path

from leadloop.testing import eventually
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness
from tests.contract.test_scoring_pipeline import score, seed_lead


def test_changed_model_rescores_profiles_from_the_log(
    scoring_harness: Harness, tmp_path: Path
) -> None:
    h = scoring_harness
    seed_lead(h, "vp-1")
    h.send({"type": "page", "userId": "low", "properties": {"path": "/pricing"}})
    h.settle()
    assert score(h, "low")["score"] == 10
    changed = tmp_path / "p.yaml"
    text = Path(EXAMPLE_PLAYBOOK).read_text()
    assert "          points: 10\n        - id: lead_magnet" in text
    changed.write_text(
        text.replace(
            "          points: 10\n        - id: lead_magnet",
            "          points: 30\n        - id: lead_magnet",
        )
    )
    h.engine.apply_playbook_file(str(changed))
    h.engine.refresh_playbooks()
    eventually(lambda: score(h, "low")["score"] == 30)
    eventually(lambda: score(h, "vp-1")["score"] == 72)
    assert h.sql("SELECT COUNT(*) FROM score_ledger WHERE kind = 'rescore'")[0][0] == 2
    # The VP was already MQL: the rescore does not announce it again.
    assert h.sql("SELECT COUNT(*) FROM events WHERE event = 'Lead Qualified'") == [(1,)]
    assert h.sql("SELECT COUNT(*) FROM outbox WHERE kind = 'webhook'") == [(0,)]


def test_a_broken_playbook_leaves_the_running_one(scoring_harness: Harness) -> None:
    h = scoring_harness
    live = h.engine.playbooks["default"]
    broken = (
        '{"broken.yaml": "version: 1\\nscoring:\\n  models:\\n    - id: x\\n      op: nope\\n"}'
    )
    h.engine.writer.submit(
        lambda c: c.execute(
            "INSERT INTO playbooks (workspace_id, digest, source, applied_at) VALUES (?, ?, ?, ?)",
            ("default", "bad", broken, 0.0),
        )
    ).result()
    h.engine.refresh_playbooks()
    assert h.engine.playbooks["default"] is live
    seed_lead(h)
    assert score(h, "vp-1")["score"] == 52
