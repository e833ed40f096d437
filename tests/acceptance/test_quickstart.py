"""`make run`'s command: prints where to look, with credentials created once and reused."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from leadloop.testing import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]


def run_once(tmp_path: Path) -> dict[str, str]:
    port = free_port()
    log = tmp_path / f"quickstart-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadloop",
                "quickstart",
                "--port",
                str(port),
                "--playbook",
                str(ROOT / "examples" / "playbook.yaml"),
                "--credentials",
                str(tmp_path / "creds.json"),
            ],
            env={**os.environ, "LEADLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/qs.db"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        text = eventually(lambda: "admin token" in log.read_text() and log.read_text(), timeout=30)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        eventually(healthy, timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    found = {}
    for line in text.splitlines():
        for label in ("tracking API", "admin API", "write key", "admin token"):
            if line.strip().startswith(label):
                found[label] = line.split(label, 1)[1].strip()
    return found


def test_quickstart_prints_credentials_and_reuses_them(tmp_path: Path) -> None:
    first = run_once(tmp_path)
    assert first["write key"].startswith("wk_") and first["admin token"].startswith("lla_")
    assert first["tracking API"].endswith("/v1/batch   (Segment spec)")
    second = run_once(tmp_path)
    assert second["write key"] == first["write key"]
    assert second["admin token"] == first["admin token"]
    assert oct((tmp_path / "creds.json").stat().st_mode & 0o777) == "0o600"


def test_saved_credentials_that_are_not_credentials_are_replaced(tmp_path: Path) -> None:
    """A credentials file of another shape (a list, numbers) counts as nothing saved."""
    saved = tmp_path / "creds.json"
    for text in ('["x"]', '{"write_key": 1, "admin_token": null}'):
        saved.write_text(text)
        found = run_once(tmp_path)
        assert found["write key"].startswith("wk_") and found["admin token"].startswith("lla_")
        assert '"write_key": "wk_' in saved.read_text()


def test_a_credentials_path_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    """A folder, or a device: `/dev/null` would otherwise be written and chmod-ed to 0600; a
    large file is some other file named by mistake, and would otherwise be replaced."""
    folder = tmp_path / "creds"
    folder.mkdir()
    export = tmp_path / "export.csv"
    export.write_bytes(b"email,score\n" * 100_000)
    for path in (str(folder), os.devnull, str(export)):
        out = subprocess.run(
            [
                *(sys.executable, "-m", "leadloop", "quickstart"),
                *("--credentials", path, "--port", str(free_port())),
            ],
            env={**os.environ, "LEADLOOP_DATABASE_URL": f"sqlite:///{tmp_path}/qs.db"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 2 and f"cannot read --credentials {path}" in out.stderr
        assert "Traceback" not in out.stderr
    assert oct(os.stat(os.devnull).st_mode & 0o777) == "0o666"
    assert export.read_bytes() == b"email,score\n" * 100_000
