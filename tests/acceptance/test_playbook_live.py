"""A running `leadloop serve` picks up `leadloop playbook apply` from another process without a
restart; a broken playbook is refused by the CLI with its file and line, and the engine keeps
scoring with the live one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from leadloop.testing import ServerProcess, eventually
from tests.contract.test_rescoring import pricing_points

ROOT = Path(__file__).resolve().parents[2]


def apply(server: ServerProcess, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadloop", "playbook", "apply", str(path)],
        env={**os.environ, "LEADLOOP_DATABASE_URL": server.database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def pricing_view(server: ServerProcess, user: str) -> list[dict[str, Any]]:
    """`user` views the pricing page; the ledger's pricing lines for that view."""
    server.send_batch([{"type": "page", "userId": user, "properties": {"path": "/pricing"}}])
    server.wait_processed()
    prof = server.lookup("user_id", user)
    assert prof is not None
    ledger = server.get(f"/api/v1/profiles/{prof['id']}/score-ledger")
    return [e for e in ledger["entries"] if e["rule"] == "pricing_page"]


def test_applied_playbook_goes_live_and_a_broken_one_is_refused(tmp_path: Path) -> None:
    server = ServerProcess(
        database_url=f"sqlite:///{tmp_path}/live.db",
        extra_args=("--clock", "manual", "--playbook", str(ROOT / "examples" / "playbook.yaml")),
        log_path=tmp_path / "server.log",
    ).start()
    try:
        assert [e["points"] for e in pricing_view(server, "before")] == [10]

        changed = tmp_path / "changed.yaml"
        changed.write_text(pricing_points(30))
        done = apply(server, changed)
        assert done.returncode == 0, done.stderr
        assert "applied playbook" in done.stdout

        # The engine looks for new playbooks on its own: poll, each time with a new lead,
        # until a new event is scored (not rescored) under the applied rule.
        tries = iter(range(10_000))
        eventually(
            lambda: pricing_view(server, f"after-{next(tries)}")[0]["points"] == 30,
            timeout=60,
            interval=0.2,
        )

        broken = tmp_path / "broken.yaml"
        text = pricing_points(40).replace("          op: gte\n", "          op: at_least\n")
        line = text.splitlines().index("          op: at_least") + 1
        broken.write_text(text)
        refused = apply(server, broken)
        assert refused.returncode != 0
        assert f"{broken}:{line}: scoring.models[0].fit[1].op" in refused.stderr
        assert "unknown operator 'at_least'" in refused.stderr
        assert "applied playbook" not in refused.stdout

        # Nothing was stored and the live one still scores: 30 points, not 40.
        diff = subprocess.run(
            [sys.executable, "-m", "leadloop", "playbook", "diff", str(changed)],
            env={**os.environ, "LEADLOOP_DATABASE_URL": server.database_url},
            capture_output=True,
            text=True,
            check=True,
        )
        assert diff.stdout.strip() == "no changes"
        lines = pricing_view(server, "after-broken")
        assert [(e["kind"], e["points"]) for e in lines] == [("engagement", 30)]
    finally:
        server.stop()
