"""Journeys benchmark (issue 4), each figure beside a baseline measured in the same run.

    python bench/bench_journeys.py [--entries 20000] [--sizes 10000,100000] [--due 10000]

1. Entries/s: a log of identify + `Go` events processed with the journeys stage (each `Go` enters
   a journey: policy check, a queued email, a 1-day wait_for timer), against the same log
   processed without it (target: ≥ 5,000 entries/s).
2. Timer wake-ups/s: N waiting instances whose wait ends at once; firing the timers and
   processing the wake-ups, each moving its instance to a send and the end (target: ≥ 20,000/s).
3. Wake-up rate with 10k / 100k (/1M) instances waiting, of which the same number fall due:
   the timer scan must not slow down with the instance count.
4. Peak RSS of the process.

Embedded default (SQLite, one process). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leadloop.app import Engine  # noqa: E402
from leadloop.clock import ManualClock  # noqa: E402
from leadloop.config import Settings  # noqa: E402
from leadloop.ingest import parse  # noqa: E402
from leadloop.journeys.service import JourneyStage  # noqa: E402

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


def engine_for(folder: str, name: str, playbook_text: str, journeys: bool) -> Engine:
    path = Path(folder) / f"{name}.yaml"
    path.write_text(playbook_text, encoding="utf-8")
    engine = Engine(
        Settings(database_url=f"sqlite:///{folder}/{name}.db", playbook=str(path)),
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
    while k := engine.processor.run_once(conn):
        n += k
    conn.close()
    return n, time.perf_counter() - t0


def bench_entries(folder: str, users: int) -> tuple[float, float]:
    plain = engine_for(folder, "plain", ENTRY_PLAYBOOK, journeys=False)
    fill(plain, users)
    n, seconds = process_all(plain)
    plain.stop()
    base = n / seconds
    with_journeys = engine_for(folder, "entries", ENTRY_PLAYBOOK, journeys=True)
    fill(with_journeys, users)
    _n, seconds = process_all(with_journeys)
    with_journeys.stop()
    return base, users / seconds


def bench_wakeups(folder: str, total: int, due: int) -> float:
    """`total` waiting instances, `due` of them due in 1 h; returns wake-ups per second."""
    text = PLAYBOOK % {"due": due, "rest": max(total - due, 1)}
    engine = engine_for(folder, f"wake{total}", text, journeys=True)
    fill(engine, total)
    process_all(engine)
    assert engine.manual_clock is not None
    engine.manual_clock.advance(HOUR)
    t0 = time.perf_counter()
    fired = engine.timers.fire_now()
    process_all(engine)
    seconds = time.perf_counter() - t0
    engine.stop()
    return fired / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--sizes", default="10000,100000", help="instance counts (add 1000000)")
    parser.add_argument("--due", type=int, default=10_000, help="instances due at once")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="leadloop-bench-journeys-") as folder:
        base, entries = bench_entries(folder, args.entries)
        rows.append(
            (
                "journey entries/s (identify + Go per entry)",
                f"{entries:,.0f}",
                f"log without journeys: {base / 2:,.0f} pairs/s; target ≥ 5,000",
            )
        )
        all_due = bench_wakeups(folder, args.due, args.due)
        rows.append(("timer wake-ups/s (all due)", f"{all_due:,.0f}", "target ≥ 20,000"))
        for size in (int(s) for s in args.sizes.split(",") if s):
            rate = bench_wakeups(folder, size, min(args.due, size))
            rows.append(
                (
                    f"wake-ups/s, {size:,} instances waiting",
                    f"{rate:,.0f}",
                    f"{min(args.due, size):,} due",
                )
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS (MiB)", f"{rss:,.0f}", "whole benchmark process; target ≤ 1,024 at 1M"))
    print("| measure | value | notes |")
    print("| --- | ---: | --- |")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


if __name__ == "__main__":
    main()
