"""The state the processor keeps after deterministic failures: when it takes a batch apart,
what it reads next, and when it parks or goes back to whole batches."""

from __future__ import annotations

from leadloop.log.isolation import Isolation
from leadloop.log.park import STRIKES

BOOM = ValueError("boom")


def test_whole_batches_until_strikes_in_a_row_at_one_position() -> None:
    iso = Isolation()
    for n in range(1, STRIKES):
        assert iso.failed("10", 50, 7, BOOM) == n
        assert not iso.active
    iso.failed("10", 50, 7, BOOM)
    assert iso.active


def test_a_failure_elsewhere_starts_the_count_again() -> None:
    iso = Isolation()
    for _ in range(STRIKES - 1):
        iso.failed("10", 50, None, BOOM)
    assert iso.failed("20", 50, None, BOOM) == 1 and not iso.active


def test_a_batch_written_after_a_failure_clears_it() -> None:
    iso = Isolation()
    iso.failed("10", 50, None, BOOM)
    iso.written("5")  # another position: not that batch
    assert iso.position == "10"
    iso.written("10")
    assert iso.position is None and iso.failures == 0


def test_the_events_before_the_culprit_go_as_one_part_then_it_goes_alone() -> None:
    iso = Isolation()
    for _ in range(STRIKES):
        iso.failed("10", 50, 7, BOOM)
    assert iso.part(batch_size=50) == 7
    iso.part_written("17", 7)
    assert iso.active and iso.budget == 43
    assert iso.part(batch_size=50) == 1
    for n in range(1, STRIKES + 1):
        iso.failed("17", 1, 0, BOOM)
        assert iso.alone == n
    assert iso.part(batch_size=50) == 0  # park it
    assert iso.error is BOOM


def test_an_unknown_culprit_means_one_at_a_time() -> None:
    iso = Isolation()
    for _ in range(STRIKES):
        iso.failed("10", 50, None, BOOM)
    assert iso.part(batch_size=50) == 1


def test_a_batchs_worth_through_in_parts_means_whole_batches_again() -> None:
    iso = Isolation()
    for _ in range(STRIKES):
        iso.failed("10", 4, None, BOOM)
    position = 10
    for _ in range(3):
        assert iso.part(batch_size=4) == 1
        position += 1
        iso.part_written(str(position), 1)
        assert iso.active
    iso.part(batch_size=4)
    iso.part_written("14", 1)
    assert not iso.active and iso.position is None


def test_an_event_gone_before_it_is_parked_gets_the_next_one_counted_afresh() -> None:
    iso = Isolation()
    for _ in range(STRIKES):
        iso.failed("10", 50, 0, BOOM)
    assert iso.part(batch_size=50) == 1
    for _ in range(STRIKES):
        iso.failed("10", 1, 0, BOOM, seq=11)
    assert iso.part(batch_size=50) == 0 and iso.met(11)
    assert not iso.met(12)  # 11 was erased: 12 is read alone, and has failed no time yet
    assert iso.alone == 0 and iso.active and iso.part(batch_size=50) == 1
    iso.failed("10", 1, 0, BOOM, seq=12)
    assert iso.alone == 1 and iso.part(batch_size=50) == 1
