"""The scoring stage remembers committed score states between batches instead of reading them
again; whatever writes them outside the processor makes it forget (`Processor.forget`, a
processor job such as a rescore, a cursor moved by a rebuild: see test_replay.py)."""

from __future__ import annotations

import threading
from typing import Any

import msgspec
import pytest

from leadloop.app import Engine
from leadloop.clock import ManualClock
from leadloop.config import Settings
from leadloop.log.processor import Processor
from leadloop.scoring.model import ScoreState
from leadloop.scoring.service import ScoringStage
from tests.contract.conftest import EXAMPLE_PLAYBOOK, Harness
from tests.contract.test_scoring_pipeline import score, seed_lead

PRICING = {"type": "page", "userId": "vp-1", "properties": {"path": "/pricing/enterprise"}}


def _zero_engagement_behind_the_processor(h: Harness) -> None:
    """Rewrite the stored state as an outside writer would (engagement 27 → 0)."""
    (raw,) = h.sql("SELECT state FROM scores WHERE model = 'lead'")[0]
    state = msgspec.json.decode(raw, type=ScoreState)
    edited = msgspec.json.encode(msgspec.structs.replace(state, steady=0.0)).decode()

    def write(c: Any) -> None:
        c.execute("UPDATE scores SET state = ? WHERE model = 'lead'", (edited,))

    h.engine.writer.submit(write).result()


@pytest.mark.parametrize(
    ("forget", "engagement"), [(False, 37), (True, 10)], ids=["kept", "forgot"]
)
def test_the_stage_scores_from_what_it_remembers_until_told_to_forget(
    scoring_harness: Harness, forget: bool, engagement: int
) -> None:
    h = scoring_harness
    seed_lead(h)
    assert score(h)["engagement"] == 27
    _zero_engagement_behind_the_processor(h)
    if forget:
        h.engine.processor.forget()
    h.send(PRICING)
    h.settle()
    # Kept: the edit is not read back, the stage scores from what it committed (27 + 10).
    # Forgot: the next batch reads the table (0 + 10).
    assert score(h)["engagement"] == engagement


def test_a_processor_job_makes_the_stage_forget(scoring_harness: Harness) -> None:
    # Rescoring runs as a processor job and rewrites score states through the writer.
    h = scoring_harness
    seed_lead(h)
    done = threading.Event()

    def job(_conn: Any) -> None:
        _zero_engagement_behind_the_processor(h)
        done.set()

    h.engine.processor.request(job)
    assert done.wait(timeout=30)
    h.send(PRICING)
    h.settle()
    assert score(h)["engagement"] == 10


def test_a_cursor_moved_by_another_consumer_makes_the_stage_forget(backend_url: str) -> None:
    # PostgreSQL fail-over: another worker consumed batches (and wrote score states) while this
    # processor was not leading. When it leads again, the cursor is not where it left it.
    engine = Engine(
        Settings(database_url=backend_url, playbook=EXAMPLE_PLAYBOOK),
        clock=ManualClock(1_800_000_000.0),
        manual_clock=True,
        run_processor=False,
    )
    engine.start()
    h = Harness(engine)
    other = Processor(engine._connect, engine.writer, engine.clock)
    other.set_stages([ScoringStage(engine.scoring_models)])
    conn = engine._connect()
    try:

        def drain(processor: Processor) -> None:
            while processor.run_once(conn):
                pass

        seed_lead(h, settle=False)  # nothing processes until drained
        drain(engine.processor)
        assert score(h)["engagement"] == 27
        h.send(PRICING)
        drain(other)  # the other consumer: 27 + 10
        assert score(h)["engagement"] == 37
        h.send(PRICING)
        drain(engine.processor)  # must read 37, not reuse the 27 it committed itself
        assert score(h)["engagement"] == 47
    finally:
        conn.close()
        engine.stop()
