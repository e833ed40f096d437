"""Shared helpers for the benchmarks: servers in subprocesses, wrk, CPU accounting."""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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
