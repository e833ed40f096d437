"""Shared helpers for the benchmarks: servers in subprocesses, wrk, CPU accounting."""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadloop.config import whole_number
from leadloop.testing import ServerProcess, eventually, free_port

HERE = Path(__file__).resolve().parent


def at_least(least: int = 1) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `least` (a size of 0 or less divided by
    zero, or ran a benchmark of nothing), in ASCII digits as every CLI whole number."""

    def parse(raw: str) -> int:
        if not whole_number(raw):
            raise argparse.ArgumentTypeError(
                f"expected a whole number in digits 0-9, got {raw[:40]!r}"
            )
        if len(raw) > 18:  # past any size, and `int` refuses past 4,300 digits
            raise argparse.ArgumentTypeError(f"expected at most 18 digits, got {len(raw):,}")
        value = int(raw)
        if value < least:
            raise argparse.ArgumentTypeError(f"expected at least {least}, got {value}")
        return value

    return parse


def counts(raw: str) -> tuple[int, ...]:
    """An argparse type: comma-separated sizes, each at least 1 (none: that part is skipped)."""
    return tuple(at_least()(part) for part in raw.split(",") if part)


def _finite(raw: str, *, zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "above 0"
        raise argparse.ArgumentTypeError(f"expected a finite number {least}, got {raw[:40]!r}")
    return value


def seconds(raw: str) -> float:
    """An argparse type: a duration, finite and not negative (0: one round)."""
    return _finite(raw, zero=True)


def positive(raw: str) -> float:
    """An argparse type: a rate, finite and above 0."""
    return _finite(raw, zero=False)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class Bare:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def start_bare() -> Bare:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=HERE,
    )

    def up() -> bool:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/t", data=b"{}", method="POST")
            with urllib.request.urlopen(req, timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    eventually(up, timeout=20)
    return Bare(proc, port)


def start_leadloop(database_url: str, *args: str) -> ServerProcess:
    return ServerProcess(database_url=database_url, extra_args=args).start()


def temp_sqlite() -> str:
    folder = tempfile.mkdtemp(prefix="leadloop-bench-")
    return f"sqlite:///{folder}/bench.db"


WRK_BATCH = """
local n = 0
local key = "%s"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. key
request = function()
  n = n + 1
  local parts = {}
  for i = 1, %d do
    parts[i] = '{"type":"track","userId":"user-' .. ((n * 7 + i) %% 20000) ..
      '","event":"Page Viewed","properties":{"path":"/pricing","title":"Pricing"},' ..
      '"context":{"library":{"name":"bench"}},"timestamp":"2026-11-26T16:39:10.256Z",' ..
      '"messageId":"' .. id .. '-' .. n .. '-' .. i .. '"}'
  end
  local body = '{"batch":[' .. table.concat(parts, ",") .. '],"sentAt":"2026-11-26T16:39:10.300Z"}'
  return wrk.format(nil, "/v1/batch", nil, body)
end
"""

WRK_SINGLE = """
local n = 0
local key = "%s"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. key
request = function()
  n = n + 1
  local body = '{"type":"track","userId":"user-' .. (n %% 20000) ..
    '","event":"Page Viewed","properties":{"path":"/pricing","title":"Pricing"},' ..
    '"context":{"library":{"name":"bench"}},"timestamp":"2026-11-26T16:39:10.256Z",' ..
    '"messageId":"' .. id .. '-' .. n .. '"}'
  return wrk.format(nil, "/v1/track", nil, body)
end
"""


def basic(key: str) -> str:
    import base64

    return base64.b64encode(f"{key}:".encode()).decode()


def wrk(base: str, script: str, seconds: float, connections: int = 32, threads: int = 1) -> float:
    """Requests per second that got an answer (wrk counts non-2xx separately: must be 0)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for this benchmark: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        # Each wrk thread gets its own id prefix so message ids never collide.
        f.write("id = tostring(math.random(1, 2^30)) .. tostring(os.time())\n" + script)
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, int(seconds))}s",
            "-s",
            f.name,
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad and int(bad.group(1)):
        raise SystemExit(f"wrk saw {bad.group(1)} error responses:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


def measure(pid: int, fn: object) -> tuple[float, float, float]:
    """Run fn(); return (its result, wall seconds, server CPU seconds)."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    result = fn()  # type: ignore[operator]
    return float(result), time.perf_counter() - t0, cpu_seconds(pid) - cpu0


class ProbeStage:
    """A processor stage placed last that notes when each probe event's batch is written
    (`flush` runs in the batch's transaction, just before its commit)."""

    name = "probe"

    def __init__(self) -> None:
        self.seen: dict[int, list[str]] = {}
        self.written: dict[str, float] = {}

    def handle(self, batch: Any, event: Any, profile: Any) -> Any:
        if event.message_id.startswith("probe-"):
            self.seen.setdefault(id(batch), []).append(event.message_id)
        return profile

    def flush(self, batch: Any, conn: Any) -> None:
        now = time.perf_counter()
        for mid in self.seen.pop(id(batch), []):
            self.written.setdefault(mid, now)

    def discard(self, batch: Any) -> None:
        self.seen.pop(id(batch), None)


class ProbeFeed:
    """A thread appending a page view every 5 ms (200 events/s) for the users `{prefix}0` to
    `{prefix}{users - 1}` in turn, each with the time it was appended, for `ProbeStage` to
    time. A failure in the thread is raised by `stop`, so a broken feed never reads as empty
    figures."""

    def __init__(
        self, engine: Any, received_at: float, *, prefix: str = "p", users: int = 2000
    ) -> None:
        from leadloop.ingest import parse

        self.sent: dict[str, float] = {}
        self._stop = threading.Event()
        self._failed: list[BaseException] = []

        def feed() -> None:
            i = 0
            while not self._stop.is_set():
                mid = f"probe-{i}"
                page = {"type": "page", "userId": f"{prefix}{i % users}", "messageId": mid}
                accepted = parse.parse_request({"batch": [page]}, None, received_at=received_at)
                assert isinstance(accepted, list), accepted
                self.sent[mid] = time.perf_counter()
                engine.writer.append("default", accepted).result()
                i += 1
                time.sleep(0.005)

        def run() -> None:
            try:
                feed()
            except BaseException as exc:
                self._failed.append(exc)

        self._thread = threading.Thread(target=run, name="bench-probe-feed")
        self._thread.start()

    def stop(self, probe: ProbeStage) -> None:
        """Stop appending, then wait until every probe event sent is written."""
        self._stop.set()
        self._thread.join()
        if self._failed:
            raise self._failed[0]
        eventually(lambda: all(m in probe.written for m in self.sent), timeout=120)


def waits_ms(sent: dict[str, float], written: dict[str, float]) -> tuple[float, float, float]:
    """p50, p99 and max of append → written, in ms, of the events in `sent`."""
    waits = sorted((written[m] - t) * 1000 for m, t in sent.items() if m in written)
    if not waits:
        return math.nan, math.nan, math.nan
    return statistics.median(waits), waits[max(0, int(len(waits) * 0.99) - 1)], waits[-1]


def under_live_events(
    engine: Any,
    probe: ProbeStage,
    received_at: float,
    change: Callable[[], None],
    finished: Callable[[], bool],
    **feed: Any,
) -> tuple[float, tuple[float, ...]]:
    """On a running engine, start a `ProbeFeed`; after 3 s call `change` (apply a playbook,
    say) and wait until `finished()`. Returns the seconds from `change` to finished and the
    live events' waits (p50, p99, max ms) in the 3 s before, then from `change` to a second
    after it finished."""
    probes = ProbeFeed(engine, received_at, **feed)
    try:
        time.sleep(3.0)
        before = dict(probes.sent)
        t0 = time.perf_counter()
        change()
        deadline = time.monotonic() + 3600
        while not finished():
            if time.monotonic() > deadline:
                raise RuntimeError("the change did not finish within an hour")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        time.sleep(1.0)
    finally:
        probes.stop(probe)
    during = {m: t for m, t in probes.sent.items() if m not in before}
    return elapsed, waits_ms(before, probe.written) + waits_ms(during, probe.written)
