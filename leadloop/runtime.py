"""Process-wide interpreter settings an engine applies, and the benchmarks with it.

Why the cyclic garbage collector is tuned: the processor decodes thousands of events per batch
into short-lived dicts and lists, and the conversion sender builds request bodies of 1,000
events the same way. With Python's default thresholds (700, 10, 10) the collector runs every 700
container allocations, and objects that merely outlive one batch are promoted and rescanned by
the older generations again and again. Raising the threshold made `bench conversions` about
8 % faster and journey entries and wake-ups up to about 30 % (docs/benchmarks.md, run 4).
Almost none of these objects form reference cycles (they are freed by reference counting), so
running the collector less often frees the same memory: the young generation is at most
`threshold` objects larger between collections.
"""

from __future__ import annotations

import gc
import sys

GC_THRESHOLD = 50_000
"""Container allocations between young-generation collections (Python's default is 700)."""
GC_OLDER = (50, 100)
"""Young collections per middle one, middle per full one (defaults 10 and 10)."""


def tune_gc(threshold: int = GC_THRESHOLD) -> None:
    """Set the collector's thresholds for a long-running engine; `0` keeps Python's defaults
    (`LEADLOOP_GC_THRESHOLD=0`). Idempotent, cheap, and process-wide."""
    if threshold > 0:
        gc.set_threshold(threshold, *GC_OLDER)


def freeze_startup() -> None:
    """After start-up: move everything loaded so far (modules, playbooks, compiled rules, pools)
    out of the collector's view, so full collections scan only what the engine made since."""
    gc.collect()
    gc.freeze()


SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the interpreter lock while another waits for it (Python: 0.005).

The processor decides a batch while the writer thread commits the previous one (`log.processor`),
and the writer needs the lock back between its statements. At 5 ms each hand-back could cost a
whole interval; 0.5 ms took a wake-up from 60 to 51 µs in the benchmark that found it
(docs/benchmarks.md, "Writing one batch while the next is decided"), and 0.1 ms was slower again."""


def tune_switch_interval(seconds: float = SWITCH_INTERVAL) -> None:
    """Set the interpreter's thread switch interval for a long-running engine."""
    sys.setswitchinterval(seconds)
