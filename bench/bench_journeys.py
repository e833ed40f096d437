"""Journeys benchmark (issue 4), each figure beside a baseline measured in the same run.

    python bench/bench_journeys.py [--entries 20000] [--sizes 10000,100000] [--due 10000]
                                   [--postgres postgresql://postgres@127.0.0.1/postgres]

1. Entries/s: a log of identify + `Go` events processed with the journeys stage (each `Go` enters
   a journey: policy check, a queued email, a 1-day wait_for timer), against the same log
   processed without it (target: ≥ 5,000 entries/s).
2. Timer wake-ups/s: N waiting instances whose wait ends at once; firing the timers and
   processing the wake-ups, each moving its instance to a send and the end (target: ≥ 20,000/s),
   against the same number of plain timers fired and processed without the journeys stage.
3. Wake-up rate with 10k / 100k (/1M) instances waiting, of which the same number fall due:
   the timer scan must not slow down with the instance count.
4. Peak RSS of the process after each step.
5. Lateness under load: a running engine (real clock, processor and timer threads) takes a
   paced stream of `Go` events for `--late-seconds`; each entry waits 3 s, then sends. How late
   each wake-up is processed after its due time (p50, p99, max), at each rate of `--late-rates`
   (entries/s, and as many wake-ups/s once the first waits end). Target: within 1 s.
6. Only with `--sweep-sizes`: N profiles are in the log when a playbook adding a segment
   journey ("no `Go` in 30 days") is applied while live events keep arriving; the sweep's rate
   and the live events' wait (append to the processor's write) before and during it. No
   target: it shows how long a sweep holds the events behind it.

Embedded default (SQLite, one process); `--postgres URL` runs the same on a database it creates
on that server and drops at the end. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import ProbeStage, at_least, counts, seconds, under_live_events  # noqa: E402

from leadloop.app import Engine  # noqa: E402
from leadloop.clock import ManualClock  # noqa: E402
from leadloop.config import Settings  # noqa: E402
from leadloop.ingest import parse  # noqa: E402
from leadloop.journeys.service import JourneyStage  # noqa: E402
from leadloop.storage.db import PostgresConnection  # noqa: E402

START = 1_800_000_000.0 + 12 * 3600  # 20:00 UTC: no quiet hours configured anyway
HOUR = 3600.0

PLAYBOOK = """
version: 1
journeys:
  templates:
    email: [hello, later]
  flows:
    - id: bench
      entry: { event: Go }
      steps:
        - { id: route, type: split, paths: [{weight: %(due)s, next: short}, {weight: %(rest)s, next: long}] }
        - { id: short, type: wait, duration: 1h, next: hello }
        - { id: long, type: wait, duration: 30d, next: hello }
        - { id: hello, type: send, channel: email, template: hello }
"""

ENTRY_PLAYBOOK = """
version: 1
journeys:
  templates:
    email: [hello]
  flows:
    - id: bench
      entry: { event: Go }
      steps:
        - { id: hello, type: send, channel: email, template: hello, next: wait }
        - { id: wait, type: wait_for, event: Email Link Clicked, message_of: hello, timeout: 1d }
"""


SWEEP_FLOW = """
    - id: win_back
      entry: { segment: [{event: Go}, {event: Go, within: 30d, not: true}] }
      steps:
        - { id: hello, type: send, channel: email, template: hello }
"""


class Backend:
    """Where each measurement's fresh database lives: files in a folder, or databases created
    (and dropped at the end) on one PostgreSQL server."""

    def __init__(self, folder: str, postgres: str | None) -> None:
        self.folder = folder
        self.postgres = postgres
        self.created: list[str] = []
        self.label = "PostgreSQL" if postgres else "SQLite (embedded default)"

    def url(self, name: str) -> str:
        """A new, empty database for every call (two runs never share one)."""
        db = f"leadloop_bench_{name}_{uuid.uuid4().hex[:8]}"
        if self.postgres is None:
            return f"sqlite:///{self.folder}/{db}.db"
        admin = PostgresConnection(self.postgres)
        admin.execute(f'CREATE DATABASE "{db}"')
        admin.close()
        self.created.append(db)
        return urlunparse(urlparse(self.postgres)._replace(path="/" + db))

    def drop_all(self) -> None:
        if self.postgres is None:
            return
        admin = PostgresConnection(self.postgres)
        for db in self.created:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()


def engine_for(backend: Backend, name: str, playbook_text: str, journeys: bool) -> Engine:
    path = Path(backend.folder) / f"{name}.yaml"
    path.write_text(playbook_text, encoding="utf-8")
    engine = Engine(
        Settings(database_url=backend.url(name), playbook=str(path)),
        clock=ManualClock(START),
        manual_clock=True,
        run_processor=False,
    )
    engine.processor.set_stages([JourneyStage(engine.playbooks.get)] if journeys else [])
    engine.dispatcher.senders.clear()
    engine.start()
    return engine


def fill(engine: Engine, users: int, offset: int = 0) -> None:
    pending = []
    for base in range(0, users, 250):
        batch: list[dict[str, Any]] = []
        for i in range(base + offset, min(base + 250, users) + offset):
            batch.append(
                {"type": "identify", "userId": f"u{i}", "traits": {"email": f"u{i}@x.test"}}
            )
            batch.append({"type": "track", "userId": f"u{i}", "event": "Go"})
        accepted = parse.parse_request({"batch": batch}, None, received_at=engine.clock.now())
        assert isinstance(accepted, list)
        pending.append(engine.writer.append("default", accepted))
        if len(pending) > 50:
            pending.pop(0).result()
    for future in pending:
        future.result()


def process_all(engine: Engine) -> tuple[int, float]:
    conn = engine._connect()
    t0 = time.perf_counter()
    n = 0
    while k := engine.processor.step(conn):
        n += k
    conn.close()
    return n, time.perf_counter() - t0


def bench_entries(backend: Backend, users: int) -> tuple[float, float]:
    """(identify + Go pairs/s without the journeys stage, entries/s with it)."""
    plain = engine_for(backend, "plain", ENTRY_PLAYBOOK, journeys=False)
    fill(plain, users)
    n, seconds = process_all(plain)
    plain.stop()
    base = n / 2 / seconds
    with_journeys = engine_for(backend, "entries", ENTRY_PLAYBOOK, journeys=True)
    fill(with_journeys, users)
    _n, seconds = process_all(with_journeys)
    entered = count(with_journeys, "SELECT COUNT(*) FROM journey_instances")
    with_journeys.stop()
    assert entered == users, f"{entered} of {users} entered"
    return base, users / seconds


def settle_statistics(engine: Engine) -> None:
    """On PostgreSQL, bring the planner's statistics of the tables just filled up to date before
    measuring, as the engine's analyser (`storage/analyze.py`) does within seconds on a live
    server; otherwise the measurement depends on where its 5-second cycle happens to be."""
    if engine.url.dialect == "postgres":
        engine.writer.submit(lambda c: c.execute("ANALYZE")).result()


def count(engine: Engine, query: str) -> int:
    return int(engine.read_sync(lambda c: c.execute(query))[0][0])


def fire_and_process(engine: Engine) -> tuple[int, float, float]:
    """Fire every due timer and process the wake-ups: (timers fired, seconds in all, seconds
    of the firing alone: the scan of due timers that turns them into log events)."""
    t0 = time.perf_counter()
    fired = engine.timers.fire_now()
    scanned = time.perf_counter() - t0
    process_all(engine)
    return fired, time.perf_counter() - t0, scanned


def bench_plain_timers(backend: Backend, total: int) -> float:
    """Baseline: `total` timers on as many profiles fired and processed without any stage
    (the log, identity and the timer table alone)."""
    engine = engine_for(backend, "plaintimers", ENTRY_PLAYBOOK, journeys=False)
    fill(engine, total)
    process_all(engine)
    due = START + HOUR

    def schedule(conn: Any) -> None:
        rows = conn.execute("SELECT workspace_id, id FROM profiles")
        conn.executemany(
            "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (ws, f"bench:{pid}", pid, due, '{"name": "Bench Tick", "properties": {}}')
                for ws, pid in rows
            ],
        )

    engine.writer.submit(schedule).result()
    assert engine.manual_clock is not None
    engine.manual_clock.advance(HOUR)
    fired, seconds, _scan = fire_and_process(engine)
    engine.stop()
    assert fired == total, f"{fired} of {total} plain timers fired"
    return fired / seconds


def bench_wakeups(backend: Backend, total: int, due: int) -> tuple[float, int, float]:
    """`total` waiting instances, about `due` of them due in 1 h (a stable split); returns
    (wake-ups per second, wake-ups, timers per second of the firing scan alone)."""
    text = PLAYBOOK % {"due": due, "rest": max(total - due, 1)}
    engine = engine_for(backend, f"wake{total}", text, journeys=True)
    fill(engine, total)
    process_all(engine)
    settle_statistics(engine)
    waiting = count(engine, "SELECT COUNT(*) FROM timers")
    assert waiting == total, f"{waiting} of {total} instances waiting"
    assert engine.manual_clock is not None
    engine.manual_clock.advance(HOUR)
    fired, seconds, scanned = fire_and_process(engine)
    sent = count(engine, "SELECT COUNT(*) FROM outbox WHERE kind = 'message'")
    engine.stop()
    assert fired > 0 and sent == fired, f"{fired} timers fired, {sent} messages queued"
    return fired / seconds, fired, fired / scanned


LATE_PLAYBOOK = """
version: 1
journeys:
  templates:
    email: [hello]
  flows:
    - id: late
      entry: { event: Go }
      steps:
        - { id: wait, type: wait, duration: %(wait)ss, next: hello }
        - { id: hello, type: send, channel: email, template: hello }
"""
LATE_WAIT = 3.0


def bench_lateness(backend: Backend, rate: int, seconds: float) -> tuple[float, float, float, int]:
    """Entries paced at `rate`/s for `seconds` into a running engine; returns the p50, p99 and
    max of (when a wake-up was processed - when it was due), in seconds, and how many."""
    path = Path(backend.folder) / f"late{rate}.yaml"
    path.write_text(LATE_PLAYBOOK % {"wait": LATE_WAIT}, encoding="utf-8")
    engine = Engine(Settings(database_url=backend.url(f"late{rate}"), playbook=str(path)))
    engine.processor.set_stages([JourneyStage(engine.playbooks.get)])
    engine.dispatcher.senders.clear()  # measure the engine, not a mail server
    engine.start()
    try:
        chunk = max(1, rate // 20)  # 20 appends a second
        sent = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) + chunk
            batch = []
            for i in range(sent, due):
                traits = {"email": f"u{i}@x.test"}
                batch.append({"type": "identify", "userId": f"u{i}", "traits": traits})
                batch.append({"type": "track", "userId": f"u{i}", "event": "Go"})
            if batch:
                accepted = parse.parse_request(
                    {"batch": batch}, None, received_at=engine.clock.now()
                )
                assert isinstance(accepted, list)
                engine.writer.append("default", accepted).result()
                sent = due
            time.sleep(max(0.0, (sent / rate) - (time.monotonic() - start)))
        # Wait for the last waits to end and be processed.
        deadline = time.monotonic() + LATE_WAIT + 60
        query = "SELECT COUNT(*) FROM outbox WHERE kind = 'message'"
        while count(engine, query) < sent and time.monotonic() < deadline:
            time.sleep(0.2)
        rows = engine.read_sync(
            lambda c: c.execute(
                "SELECT o.created_at - i.entered_at - ? FROM outbox o JOIN journey_instances i "
                "ON i.workspace_id = o.workspace_id AND i.profile_id = o.profile_id "
                "WHERE o.kind = 'message'",
                (LATE_WAIT,),
            )
        )
    finally:
        engine.stop()
    late = sorted(float(r[0]) for r in rows)
    assert len(late) == sent, f"{len(late)} of {sent} wake-ups processed"
    p99 = late[min(len(late) - 1, int(len(late) * 0.99))]
    return statistics.median(late), p99, late[-1], len(late)


def bench_sweep(backend: Backend, users: int) -> tuple[float, tuple[float, ...]]:
    """(profiles swept per second, the live events' waits before and during the sweep: p50,
    p99, max ms each). Every profile had a `Go` just now, so none is in the new segment and
    each gets a timer 30 days out: the measured wait is the sweep's own."""
    filler = engine_for(backend, "sweep", ENTRY_PLAYBOOK, journeys=True)
    fill(filler, users)
    process_all(filler)
    filler.stop()
    # The change is applied to an engine that runs as `serve` does (its own processor, timer
    # and dispatcher threads), on the database just filled.
    engine = Engine(filler.settings, clock=ManualClock(filler.clock.now()), manual_clock=True)
    probe = ProbeStage()
    engine.processor.set_stages([JourneyStage(engine.playbooks.get), probe])
    engine.dispatcher.senders.clear()
    engine.start()
    path = Path(backend.folder) / "sweep-added.yaml"
    path.write_text(ENTRY_PLAYBOOK + SWEEP_FLOW, encoding="utf-8")
    timers = "SELECT COUNT(*) FROM timers WHERE key LIKE 'segment:win_back:%'"

    def change() -> None:
        engine.apply_playbook_file(str(path))
        engine.refresh_playbooks()

    # Live events for a tenth of the profiles already there: a page view leaves them out of
    # the segment, so each ends with one timer, the sweep's or its event's (never two: see
    # docs/journeys.md); the other nine tenths get theirs from the sweep alone.
    try:
        elapsed, waits = under_live_events(
            engine,
            probe,
            engine.clock.now(),
            change,
            lambda: count(engine, timers) >= users,
            prefix="u",
            users=max(1, min(users // 10, 2000)),
        )
    finally:
        engine.stop()
    return users / elapsed, waits


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(backend: Backend, args: argparse.Namespace, rows: list[tuple[str, ...]]) -> None:
    label = backend.label
    step: Callable[[str], None] = lambda what: print(f"[{label}] {what}", file=sys.stderr)  # noqa: E731
    step(f"entries ({args.entries:,})")
    base, entries = bench_entries(backend, args.entries)
    rows.append(
        (
            label,
            "journey entries/s (identify + Go per entry)",
            f"{entries:,.0f}",
            "≥ 5,000",
            "yes" if entries >= 5000 else "no",
            f"{entries / base:.2f}× of {base:,.0f} identify + Go pairs/s without journeys",
        )
    )
    step(f"plain timers ({args.due:,})")
    plain = bench_plain_timers(backend, args.due)
    step(f"wake-ups ({args.due:,} all due)")
    all_due, _n, _scan = bench_wakeups(backend, args.due, args.due)
    rows.append(
        (
            label,
            f"timer wake-ups/s ({args.due:,} waiting, all due)",
            f"{all_due:,.0f}",
            "≥ 20,000",
            "yes" if all_due >= 20000 else "no",
            f"{all_due / plain:.2f}× of {plain:,.0f} plain timers/s without journeys",
        )
    )
    first: tuple[float, float] | None = None
    for size in args.sizes:
        due = min(args.due, size)
        step(f"wake-ups ({size:,} waiting, ~{due:,} due)")
        rate, fired, scan = bench_wakeups(backend, size, due)
        first = first or (rate, scan)
        rows.append(
            (
                label,
                f"wake-ups/s, {size:,} instances waiting ({fired:,} due)",
                f"{rate:,.0f}",
                "flat in N",
                "",
                f"{rate / first[0]:.2f}× of the smallest size; peak RSS so far {rss_mib():,.0f} MiB",
            )
        )
        rows.append(
            (
                label,
                f"timer scan alone (due timers → log events), {size:,} waiting",
                f"{scan:,.0f} timers/s",
                "flat in N",
                "",
                f"{scan / first[1]:.2f}× of the smallest size",
            )
        )
    for rate in args.late_rates:
        step(f"lateness at {rate:,} entries/s for {args.late_seconds:g} s")
        p50, p99, worst, n = bench_lateness(backend, rate, args.late_seconds)
        rows.append(
            (
                label,
                f"wake-up lateness at {rate:,} entries/s + {rate:,} wake-ups/s ({n:,} wake-ups)",
                f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms, max {worst * 1000:,.0f} ms",
                "≤ 1 s",
                "yes" if worst <= 1.0 else "no",
                "running engine, real clock; timer loop polls every 100 ms",
            )
        )
    for size in args.sweep_sizes:
        step(f"segment sweep of {size:,} profiles under 200 live events/s")
        rate, w = bench_sweep(backend, size)
        rows.append(
            (
                label,
                f"segment sweep of {size:,} profiles under 200 live events/s, profiles/s",
                f"{rate:,.0f}",
                "",
                "",
                f"live events waited p50 / p99 / max {w[3]:,.0f} / {w[4]:,.0f} / {w[5]:,.0f} "
                f"ms during it, {w[0]:,.0f} / {w[1]:,.0f} / {w[2]:,.0f} ms before it",
            )
        )
    rss = rss_mib()
    rows.append(
        (
            label,
            "peak RSS (MiB), whole benchmark process",
            f"{rss:,.0f}",
            "≤ 1,024 at 1M",
            "yes" if rss <= 1024 else "no",
            "includes the benchmark's own event generation",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=at_least(), default=20_000)
    parser.add_argument(
        "--sizes", type=counts, default=(10_000, 100_000), help="instance counts (add 1000000)"
    )
    parser.add_argument("--due", type=at_least(), default=10_000, help="instances due at once")
    parser.add_argument(
        "--late-rates",
        type=counts,
        default=(1000, 2500),
        help="entries/s for the lateness runs ('' skips)",
    )
    parser.add_argument("--late-seconds", type=seconds, default=10.0)
    parser.add_argument(
        "--sweep-sizes",
        type=counts,
        default=(),
        help="profiles for the segment sweep runs (default: none)",
    )
    parser.add_argument("--postgres", help="also run on PostgreSQL (an admin URL)")
    parser.add_argument("--only-postgres", action="store_true", help="skip the SQLite run")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory(prefix="leadloop-bench-journeys-") as folder:
        if not args.only_postgres:
            run(Backend(folder, None), args, rows)
        if args.postgres:
            backend = Backend(folder, args.postgres)
            try:
                run(backend, args, rows)
            finally:
                backend.drop_all()
    print("| backend | measure | value | target | met | same-run baseline |")
    print("| --- | --- | ---: | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
