"""Ingestion benchmark: leadloop's tracking API against two limits measured in the same run.

    leadloop bench ingest [--seconds 10] [--postgres-url postgresql://...]

Limits: (1) a bare Starlette + msgspec endpoint that parses and answers without storage;
(2) raw SQLite batched inserts of the same rows. Targets (issue 2): batched ≥ 25,000
events/s acknowledged; single events ≥ 0.5 × the bare endpoint; a minute of ingestion and
processing together ≥ 10,000 events/s through; PostgreSQL batched ≥ 10,000 events/s.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    WRK_BATCH,
    WRK_SINGLE,
    basic,
    positive,
    seconds,
    start_bare,
    start_leadloop,
    temp_sqlite,
    wrk,
)

BATCH = 100


def raw_sqlite_rate(seconds: float) -> float:
    """Rows/s for batched INSERTs of event-shaped rows into a WAL database, 100 per commit."""
    folder = tempfile.mkdtemp(prefix="leadloop-bench-raw-")
    conn = sqlite3.connect(f"{folder}/raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, workspace_id TEXT, "
        "message_id TEXT, type TEXT, event TEXT, user_id TEXT, ts REAL, received_at REAL, body TEXT)"
    )
    conn.execute("CREATE UNIQUE INDEX m ON events (workspace_id, message_id)")
    body = json.dumps({"type": "track", "event": "Page Viewed", "properties": {"path": "/pricing"}})
    n = 0
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        rows = [
            ("default", f"m{n}-{i}", "track", "Page Viewed", f"u{i}", 1.0, 1.0, body)
            for i in range(BATCH)
        ]
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (workspace_id, message_id, type, event, user_id, ts, received_at, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        n += 1
    return n * BATCH / (time.perf_counter() - start)


def status(server: object) -> dict:  # type: ignore[type-arg]
    return server.get("/api/v1/status")  # type: ignore[attr-defined,no-any-return]


def paced_load(base: str, key: str, rate: float, seconds: float, out: dict) -> None:  # type: ignore[type-arg]
    """Send `rate` events/s in batches of 100 from 4 threads, recording what was acknowledged."""
    auth = "Basic " + basic(key)
    per_thread = rate / 4 / BATCH
    acked = [0]
    lock = threading.Lock()

    def run(tid: int) -> None:
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            due = start + n / per_thread
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            batch = [
                {
                    "type": "track",
                    "userId": f"user-{(n * 13 + i) % 50000}",
                    "event": "Page Viewed",
                    "properties": {"path": "/pricing"},
                    "messageId": f"p{tid}-{n}-{i}",
                }
                for i in range(BATCH)
            ]
            req = urllib.request.Request(
                base + "/v1/batch",
                data=json.dumps({"batch": batch}).encode(),
                headers={"Authorization": auth, "Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                if r.status == 200:
                    with lock:
                        acked[0] += BATCH
            n += 1

    threads = [threading.Thread(target=run, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["acked"] = acked[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=seconds, default=10.0)
    parser.add_argument("--sustained-seconds", type=seconds, default=60.0)
    parser.add_argument("--sustained-rate", type=positive, default=12_000.0)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()
    s = args.seconds
    results: list[tuple[str, float, str]] = []

    raw = raw_sqlite_rate(s)
    results.append(("raw SQLite batched inserts (limit)", raw, "rows/s"))

    bare = start_bare()
    try:
        bare_batch = wrk(bare.base, WRK_BATCH % ("x", BATCH), s) * BATCH
        bare_single = wrk(bare.base, WRK_SINGLE % "x", s)
    finally:
        bare.stop()
    results.append(("bare Starlette+msgspec, /v1/batch x100 (limit)", bare_batch, "events/s"))
    results.append(("bare Starlette+msgspec, single events (limit)", bare_single, "req/s"))

    server = start_leadloop(temp_sqlite(), "--no-processor")
    try:
        batched = wrk(server.base, WRK_BATCH % (basic(server.write_key), BATCH), s) * BATCH
        single = wrk(server.base, WRK_SINGLE % basic(server.write_key), s)
        stored = status(server)["log_length"]
    finally:
        server.stop()
    results.append(("leadloop SQLite, /v1/batch x100, acknowledged", batched, "events/s"))
    results.append(("leadloop SQLite, single events, acknowledged", single, "req/s"))

    print(f"\nstored {stored} events (every one answered 200 after its commit)")

    server = start_leadloop(temp_sqlite())
    try:
        out: dict = {}  # type: ignore[type-arg]
        samples = []
        load = threading.Thread(
            target=paced_load,
            args=(server.base, server.write_key, args.sustained_rate, args.sustained_seconds, out),
        )
        t0 = time.perf_counter()
        load.start()
        while load.is_alive():
            time.sleep(1)
            st = status(server)
            samples.append((time.perf_counter() - t0, st["log_length"] - st["lag"], st["lag"]))
        load.join()
        elapsed_load = time.perf_counter() - t0
        while status(server)["lag"] > 0:
            time.sleep(0.2)
        drained = time.perf_counter() - t0
        done = status(server)["log_length"]
    finally:
        server.stop()
    max_lag = max(lag for _, _, lag in samples)
    through = done / drained
    results.append(
        (
            f"leadloop SQLite, {args.sustained_seconds:.0f}s ingest+process, through",
            through,
            "events/s",
        )
    )

    pg_rate = None
    if args.postgres_url:
        import psycopg

        name = f"leadloop_bench_{int(time.time())}"
        with psycopg.connect(args.postgres_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        from urllib.parse import urlparse, urlunparse

        url = urlunparse(urlparse(args.postgres_url)._replace(path="/" + name))
        server = start_leadloop(url, "--no-processor")
        try:
            pg_rate = wrk(server.base, WRK_BATCH % (basic(server.write_key), BATCH), s) * BATCH
        finally:
            server.stop()
            with psycopg.connect(args.postgres_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        results.append(("leadloop PostgreSQL, /v1/batch x100, acknowledged", pg_rate, "events/s"))

    print("\n| measurement | rate | unit |\n| --- | ---: | --- |")
    for name, value, unit in results:
        print(f"| {name} | {value:,.0f} | {unit} |")
    print("\n| ratio | value | target |\n| --- | ---: | --- |")
    print(f"| batched / bare batched endpoint | {batched / bare_batch:.2f} | — |")
    print(f"| batched / raw SQLite inserts | {batched / raw:.2f} | — |")
    print(f"| batched events/s | {batched:,.0f} | ≥ 25,000 |")
    print(f"| single / bare single endpoint | {single / bare_single:.2f} | ≥ 0.5 |")
    print(f"| sustained through, events/s | {through:,.0f} | ≥ 10,000 |")
    print(
        f"| sustained: acknowledged {out.get('acked', 0):,} in {elapsed_load:.0f}s, max lag | {max_lag:,} | bounded |"
    )
    if pg_rate is not None:
        print(f"| PostgreSQL batched events/s | {pg_rate:,.0f} | ≥ 10,000 |")


if __name__ == "__main__":
    main()
