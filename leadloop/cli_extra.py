"""Commands contributed by later stages (scoring, journeys, bench...), kept apart so the
core CLI stays small."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from leadloop.bench_cli import register as register_bench

    register_bench(sub, db_arg)
