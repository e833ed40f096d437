"""Scoring benchmark (issue 3), each figure beside a baseline measured in the same run.

    leadloop bench scoring [--seconds N] [--profiles 1000000]

1. Processing cost of scoring: the same log processed without stages, then with the example
   playbook's scoring model (target: ≤ 25 % slower).
2. Decay: N profiles whose inactivity window ends at the same instant (target: ≥ 20,000
   profiles/s), against the raw rate of processing internal events without scoring.
3. Event → signed webhook received on loopback under a 1,000 events/s background load
   (target: p50 ≤ 20 ms, p99 ≤ 100 ms).
4. Backtest replay (target: ≥ 50,000 events/s).
5. Only when asked (`--parts rescore`): a changed model applied to N profiles' history while
   live events keep arriving; the rescore's rate and the live events' wait (append to the
   processor's write) before and during it. No target: it shows how long a rescore holds
   the events behind it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from common import ProbeStage, at_least, basic, seconds, start_leadloop, under_live_events

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.ingest import parse
from leadloop.scoring import replay
from leadloop.scoring.service import DECAY_EVENT, ScoringStage, timer_key
from leadloop.testing import WebhookReceiver, eventually

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = str(ROOT / "examples" / "playbook.yaml")
START = 1_800_000_000.0
DAY = 86400.0


def fill(engine: Engine, n_events: int, n_users: int) -> None:
    paths = ["/", "/pricing", "/docs", "/blog/x", "/pricing/enterprise"]
    pending = []
    for b in range(n_events // 100):
        batch = []
        for i in range(100):
            k = b * 100 + i
            user = f"u{k % n_users}"
            if k % 10 == 0:
                batch.append(
                    {
                        "type": "identify",
                        "userId": user,
                        "traits": {
                            "title": "VP Sales" if k % 3 else "Engineer",
                            "company_size": k % 900,
                        },
                    }
                )
            elif k % 7 == 0:
                batch.append({"type": "track", "userId": user, "event": "Lead Magnet Downloaded"})
            else:
                batch.append({"type": "page", "userId": user, "properties": {"path": paths[k % 5]}})
        accepted = parse.parse_request({"batch": batch}, None, received_at=START + b)
        assert isinstance(accepted, list)
        pending.append(engine.writer.append("default", accepted))
        if len(pending) > 100:
            pending.pop(0).result()
    for f in pending:
        f.result()


def process_all(engine: Engine) -> float:
    conn = engine._connect()
    t0 = time.perf_counter()
    n = 0
    while True:
        k = engine.processor.step(conn)
        if not k:
            break
        n += k
    conn.close()
    return n / (time.perf_counter() - t0)


def engine_for(folder: str, name: str, playbook: str | None) -> Engine:
    """An engine whose processor runs identity, plus scoring when a playbook is given (the
    journeys and conversions stages are left out: this measures scoring alone)."""
    e = Engine(
        Settings(database_url=f"sqlite:///{folder}/{name}.db", playbook=playbook),
        clock=ManualClock(START + 10 * DAY),
        manual_clock=True,
        run_processor=False,
    )
    e.start()
    e.processor.set_stages([ScoringStage(e.scoring_models)] if playbook else [])
    return e


def bench_cost(folder: str, n_events: int) -> tuple[float, float]:
    plain = engine_for(folder, "plain", None)
    plain.processor.set_stages([])
    fill(plain, n_events, n_events // 10)
    base = process_all(plain)
    plain.stop()
    scored = engine_for(folder, "scored", PLAYBOOK)
    fill(scored, n_events, n_events // 10)
    rate = process_all(scored)
    scored.stop()
    return base, rate


def seed_decay(engine: Engine, n: int) -> None:
    """N profiles with a score state whose 30-day window ends at the same instant."""
    model = engine.playbooks["default"].models[0]
    from leadloop.identity.model import Profile
    from leadloop.scoring.model import initial_state

    enc = msgspec.json.Encoder()
    state = msgspec.structs.replace(
        initial_state(model), steady=27.0, fit=25.0, stage="MQL", last_activity=START, as_of=START
    )
    state_json = enc.encode(state).decode()
    due = START + 30 * DAY
    payload = enc.encode({"name": DECAY_EVENT, "properties": {"model": model.id}}).decode()
    for i in range(0, n, 20_000):
        ids = [f"d{j}" for j in range(i, min(n, i + 20_000))]
        profiles = [
            (
                "default",
                pid,
                enc.encode(
                    Profile(
                        id=pid,
                        workspace_id="default",
                        first_seen=START,
                        last_seen=START,
                        last_activity=START,
                    )
                ).decode(),
                START,
            )
            for pid in ids
        ]

        def write(c: Any, ids: list[str] = ids, profiles: list[Any] = profiles) -> None:
            c.executemany(
                "INSERT INTO profiles (workspace_id, id, state, updated_at) VALUES (?, ?, ?, ?)",
                profiles,
            )
            c.executemany(
                "INSERT INTO scores (workspace_id, profile_id, model, state, updated_at) VALUES (?, ?, ?, ?, ?)",
                [("default", pid, model.id, state_json, START) for pid in ids],
            )
            c.executemany(
                "INSERT INTO timers (workspace_id, key, profile_id, due_at, payload) VALUES (?, ?, ?, ?, ?)",
                [("default", timer_key(model.id, pid), pid, due, payload) for pid in ids],
            )

        engine.writer.submit(write).result()


def bench_decay(folder: str, n: int, with_scoring: bool) -> float:
    e = engine_for(folder, f"decay{int(with_scoring)}", PLAYBOOK)
    if not with_scoring:
        e.processor.set_stages([])
    seed_decay(e, n)
    assert e.manual_clock is not None
    e.manual_clock.set(START + 30 * DAY + 1)
    t0 = time.perf_counter()
    fired = e.timers.fire_now()
    rate_conn = e._connect()
    done = 0
    while True:
        k = e.processor.step(rate_conn)
        if not k:
            break
        done += k
    elapsed = time.perf_counter() - t0
    rate_conn.close()
    if with_scoring:
        low = e.read_sync(
            lambda c: c.execute("SELECT COUNT(*) FROM score_ledger WHERE kind = 'decay'")
        )[0][0]
        assert low == n, f"{low} of {n} profiles decayed"
    assert fired == n and done == n
    e.stop()
    return n / elapsed


def bench_latency(samples: int, background: float) -> tuple[float, float, int]:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    receiver = WebhookReceiver(secret)
    folder = tempfile.mkdtemp(prefix="leadloop-bench-lat-")
    server = start_leadloop(f"sqlite:///{folder}/lat.db", "--playbook", PLAYBOOK)
    server.stop()
    server.env = {
        "LEADLOOP_SALES_WEBHOOK_URL": receiver.url,
        "LEADLOOP_SALES_WEBHOOK_SECRET": secret,
    }
    server.start()
    auth = {"Authorization": "Basic " + basic(server.write_key), "Content-Type": "application/json"}
    stop = threading.Event()

    def post(path: str, body: Any) -> None:
        req = urllib.request.Request(
            server.base + path, data=json.dumps(body).encode(), headers=auth, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 200

    def load() -> None:
        n = 0
        start = time.perf_counter()
        while not stop.is_set():
            due = start + n / (background / 50)
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            post(
                "/v1/batch",
                {
                    "batch": [
                        {
                            "type": "page",
                            "userId": f"bg{(n * 50 + i) % 5000}",
                            "properties": {"path": "/docs"},
                        }
                        for i in range(50)
                    ]
                },
            )
            n += 1

    bg = threading.Thread(target=load)
    bg.start()
    latencies = []
    try:
        for i in range(samples):
            user = f"lat{i}"
            post(
                "/v1/batch",
                {
                    "batch": [
                        {
                            "type": "identify",
                            "userId": user,
                            "traits": {"title": "VP Sales", "company_size": 500},
                        },
                        {"type": "page", "userId": user, "properties": {"path": "/pricing"}},
                    ]
                },
            )
            before = len(receiver.attempts)
            t0 = time.perf_counter()
            post("/v1/track", {"userId": user, "event": "Lead Magnet Downloaded"})
            eventually(lambda b=before: len(receiver.attempts) > b, timeout=10, interval=0.0005)
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        stop.set()
        bg.join()
        server.stop()
        receiver.close()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1], len(latencies)


def bench_backtest(folder: str) -> float:
    e = engine_for(folder, "scored", PLAYBOOK)
    models = e.playbooks["default"].models
    conn = e._connect()
    results = {m.id: replay.BacktestResult(m.id, m.version, "MQL") for m in models}
    t0 = time.perf_counter()
    n = 0
    accounts = replay.AccountLog(conn, "default")
    for pid, events in replay.histories(conn, "default"):
        n += len(events)
        replay.backtest_profile(
            results, pid, events, models, "MQL", "Deal Won", None, START + 20 * DAY, accounts
        )
    rate = n / (time.perf_counter() - t0)
    conn.close()
    e.stop()
    return rate


def bench_rescore(folder: str, n_profiles: int) -> tuple[float, int, tuple[float, ...]]:
    """Returns (profiles rescored per second, events replayed, the live events' waits
    before and during the rescore: p50, p99, max ms each)."""
    filler = engine_for(folder, "rescore", PLAYBOOK)
    n_events = n_profiles * 5
    fill(filler, n_events, n_profiles)
    process_all(filler)
    filler.stop()
    changed = Path(folder) / "changed.yaml"
    text = Path(PLAYBOOK).read_text()
    pricing = "value: /pricing }\n          points: 10"
    assert pricing in text, "the example playbook's pricing rule moved; update the benchmark"
    changed.write_text(text.replace(pricing, pricing[:-2] + "11"))
    finished = threading.Event()

    def progress(done: int, total: int) -> None:
        if done >= total:
            finished.set()

    # The change is applied to an engine that runs as `serve` does (its own processor, timer
    # and dispatcher threads), on the database just filled; scoring is its only stage.
    e = Engine(filler.settings, clock=ManualClock(START + 10 * DAY), manual_clock=True)
    probe = ProbeStage()
    e.processor.set_stages([ScoringStage(e.scoring_models), probe])
    e.rescore_progress = progress
    e.start()

    def change() -> None:
        e.apply_playbook_file(str(changed))
        e.refresh_playbooks()

    try:
        elapsed, waits = under_live_events(e, probe, START + 10 * DAY, change, finished.is_set)
    finally:
        e.stop()
    return n_profiles / elapsed, n_events, waits


PARTS = ("cost", "backtest", "decay", "latency", "rescore")
DEFAULT_PARTS = PARTS[:4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds", type=seconds, default=10.0, help="unused; kept for `leadloop bench`"
    )
    parser.add_argument("--events", type=at_least(), default=200_000)
    parser.add_argument("--profiles", type=at_least(), default=1_000_000)
    parser.add_argument("--samples", type=at_least(), default=200)
    parser.add_argument(
        "--rescore-profiles",
        type=at_least(),
        default=100_000,
        help="profiles (5 events each) the rescore part replays",
    )
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument(
        "--parts",
        default=",".join(DEFAULT_PARTS),
        help="comma-separated subset of cost,backtest,decay,latency,rescore (default: all "
        "but rescore; backtest replays the log the cost part fills, so it runs that part too)",
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    folder = tempfile.mkdtemp(prefix="leadloop-bench-scoring-")
    # Measured in the order of earlier runs (cost, backtest, decay, latency), printed as before.
    rows: dict[str, list[str]] = {part: [] for part in PARTS}
    if parts & {"cost", "backtest"}:
        base, scored = bench_cost(folder, args.events)
        rows["cost"].append(
            f"| processing with scoring, events/s | {scored:,.0f} | {base:,.0f} without scoring | "
            f"{scored / base:.2f} (cost {100 * (base / scored - 1):.0f} %) | cost ≤ 25 % |"
        )
    if "backtest" in parts:
        backtest = bench_backtest(folder)
        rows["backtest"].append(
            f"| backtest replay, events/s | {backtest:,.0f} | {scored:,.0f} live processing | "
            f"{backtest / scored:.2f} | ≥ 50,000 |"
        )
    if "decay" in parts:
        decay_base = bench_decay(folder, args.profiles, with_scoring=False)
        decay = bench_decay(folder, args.profiles, with_scoring=True)
        rows["decay"].append(
            f"| decay of {args.profiles:,} profiles due at once, profiles/s | {decay:,.0f} | "
            f"{decay_base:,.0f} timer events without scoring | {decay / decay_base:.2f} | "
            "≥ 20,000 |"
        )
    if "latency" in parts:
        p50, p99, n = bench_latency(args.samples, 1000.0)
        rows["latency"].append(
            f"| event → verified webhook, p50 ms ({n} samples, 1,000 ev/s background) | "
            f"{p50:.1f} | — | — | ≤ 20 |"
        )
        rows["latency"].append(f"| event → verified webhook, p99 ms | {p99:.1f} | — | — | ≤ 100 |")
    if "rescore" in parts:
        rate, n_events, w = bench_rescore(folder, args.rescore_profiles)
        rows["rescore"].append(
            f"| rescore of {args.rescore_profiles:,} profiles ({n_events:,} events) under "
            f"200 live events/s, profiles/s | {rate:,.0f} | — | — | — |"
        )
        rows["rescore"].append(
            f"| live events' wait during it, p50 / p99 / max ms | {w[3]:.0f} / {w[4]:.0f} / "
            f"{w[5]:.0f} | {w[0]:.0f} / {w[1]:.0f} / {w[2]:.0f} before it | "
            f"{w[5] / w[2]:.0f}× (max) | — |"
        )
    print("\n| measurement | value | baseline (same run) | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for part in ("cost", "decay", "latency", "backtest", "rescore"):
        for row in rows[part]:
            print(row)


if __name__ == "__main__":
    main()
