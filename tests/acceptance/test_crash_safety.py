"""Nothing acknowledged is lost, nothing is applied twice: SIGKILL the server mid-load."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from leadloop.storage.db import DatabaseUrl, connect
from leadloop.testing import ServerProcess, eventually


def _load(server: ServerProcess, acked: list[str], stop: threading.Event, client: int) -> None:
    auth = "Basic " + base64.b64encode(f"{server.write_key}:".encode()).decode()
    n = 0
    while not stop.is_set():
        ids = [f"c{client}-{n}-{i}-{uuid.uuid4().hex[:6]}" for i in range(50)]
        n += 1
        batch = [
            {"type": "track", "userId": f"user-{client}-{i % 7}", "event": "Load", "messageId": m}
            for i, m in enumerate(ids)
        ]
        req = urllib.request.Request(
            server.base + "/v1/batch",
            data=json.dumps({"batch": batch}).encode(),
            headers={"Authorization": auth, "Content-Type": "application/json"},
            method="POST",
        )
        try:
            # A long timeout: a timed-out request ends this loader (as if the server were gone),
            # and with all three ended on a stalled, loaded machine the 10,000 acks never come.
            # A killed server resets the connection at once, whatever the timeout.
            with urllib.request.urlopen(req, timeout=60) as r:
                if r.status == 200:
                    acked.extend(ids)
        except (urllib.error.URLError, ConnectionError, OSError):
            return  # the server is gone: whatever was not answered 200 may or may not be stored


def test_sigkill_mid_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/crash.db"
    server = ServerProcess(database_url=url, log_path=tmp_path / "server.log").start()
    acked: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server, acked, stop, c)) for c in range(3)]
    for t in threads:
        t.start()
    eventually(lambda: len(acked) >= 10_000, timeout=60)
    server.kill()  # SIGKILL: no shutdown hook runs
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert acked

    server.start()  # same database: the processor resumes from its committed cursor
    try:
        server.wait_processed(timeout=120)
        conn = connect(DatabaseUrl.parse(url))
        stored = {
            r[0]: r[1]
            for r in conn.execute("SELECT message_id, COUNT(*) FROM events GROUP BY message_id")
        }
        missing = [m for m in acked if m not in stored]
        assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
        assert all(n == 1 for n in stored.values())
        # Every stored event was applied to its profile exactly once, crash or not.
        total = len(stored)
        counted = 0
        for (state,) in conn.execute("SELECT state FROM profiles WHERE merged_into IS NULL"):
            counted += json.loads(state)["event_counts"].get("track", 0)
        conn.close()
        assert counted == total
    finally:
        server.stop()
