"""`leadloop bench NAME`: runs a benchmark from `bench/` and prints ratios to its baseline."""

from __future__ import annotations

import argparse
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCHES = ("ingest", "scoring", "journeys", "channels", "conversions")


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints ratios to a same-run baseline)")
    p.add_argument("name", choices=BENCHES, help="which benchmark")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each phase runs")
    p.add_argument("--postgres-url", default=None, help="also run against this PostgreSQL")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Any) -> int:
    root = Path(__file__).resolve().parent.parent / "bench"
    script = root / f"bench_{args.name}.py"
    if not script.exists():
        print(f"leadloop: bench/{script.name} is not here (benchmarks run from a checkout)")
        return 2
    sys.path.insert(0, str(root))
    sys.argv = [str(script), "--seconds", str(args.seconds)] + (
        ["--postgres-url", args.postgres_url] if args.postgres_url else []
    )
    runpy.run_path(str(script), run_name="__main__")
    return 0
