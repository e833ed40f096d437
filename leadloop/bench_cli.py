"""`leadloop bench NAME [OPTIONS]`: runs `bench/bench_NAME.py` from a checkout, which prints its
figures beside baselines measured in the same run. Options after the name go to the script
(`leadloop bench ingest --help` lists them)."""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leadloop.scratch import quiet_engine_logs

BENCHES = ("ingest", "scoring", "journeys", "channels", "conversions", "bandit")


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints ratios to a same-run baseline)")
    p.add_argument("name", choices=BENCHES, help="which benchmark")
    p.add_argument("options", nargs=argparse.REMAINDER, help="passed to the benchmark script")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Any) -> int:
    root = Path(__file__).resolve().parent.parent / "bench"
    script = root / f"bench_{args.name}.py"
    if not script.exists():
        print(f"leadloop: bench/{script.name} is not here (benchmarks run from a checkout)")
        return 2
    sys.path.insert(0, str(root))
    sys.argv = [str(script), *args.options]
    # The engines a benchmark starts are scratch ones: their start-up would bury its table.
    with quiet_engine_logs():
        runpy.run_path(str(script), run_name="__main__")
    return 0
