"""What the processor knows of the deterministic failures at its cursor, and what to read next.

After `park.STRIKES` failures in a row of batches read from one position, the batch is taken
apart: the events before the one whose decision raised go as one part, then each event alone;
an event that fails alone `park.STRIKES` times is parked. A batch's worth of events going
through in parts ends it (the failure needed the events together, or has passed). No I/O here:
the processor reads, writes and logs (docs/decisions/0006-parked-events.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from leadloop.log.park import STRIKES


@dataclass
class Isolation:
    position: str | None = None
    """The cursor position the failures were met at (None: no failure counted)."""
    failures: int = 0
    """Batches of more than one event, read from `position`, that failed in a row."""
    alone: int = 0
    """Failures of the event at `position` read alone."""
    clean: int = 0
    """Events before the one whose decision raised, when known: they go as one part."""
    budget: int = 0
    """Events left to read in parts (0: not taking a batch apart)."""
    error: BaseException | None = None
    """The last failure, recorded with the event should it be parked."""
    seq: int | None = None
    """The event whose failures alone `alone` counts."""

    @property
    def active(self) -> bool:
        """Whether the next step reads a part rather than a whole batch."""
        return self.budget > 0 or self.failures >= STRIKES or self.alone > 0

    def failed(
        self,
        at: str,
        size: int,
        culprit: int | None,
        error: BaseException,
        seq: int | None = None,
    ) -> int:
        """Count a deterministic failure of `size` events read from `at` (`culprit`: the index
        of the event whose decision raised, when known; `seq`: the first event's); returns the
        failures in a row there."""
        if at != self.position:
            self.clear()
            self.position = at
        if size == 1:
            if seq != self.seq:  # another event than the one counted (that one was erased)
                self.alone, self.seq = 0, seq
            self.alone += 1
        else:
            self.failures += 1
        self.clean = culprit or 0
        self.error = error
        return self.failures + self.alone

    def written(self, start: str) -> None:
        """A whole batch read from `start` committed: whatever failed there has passed."""
        if start == self.position and not self.active:
            self.clear()

    def part(self, batch_size: int) -> int:
        """How many events to read as the next part; 0: park the event at `position`."""
        if self.alone >= STRIKES:
            return 0
        if self.budget == 0:
            self.budget = batch_size
        return self.clean if self.clean and not self.alone else 1

    def met(self, seq: int) -> bool:
        """Whether the event about to be parked, `seq`, is the one that failed alone; if not
        (that one was erased), this one is read alone and counted afresh."""
        if self.seq is None or seq == self.seq:
            return True
        self.alone, self.seq = 0, None
        return False

    def part_written(self, after: str, events: int) -> None:
        """A part committed; `after` is the position after it."""
        self.position, self.failures, self.alone, self.clean = after, 0, 0, 0
        self.seq = None
        self.budget -= events
        if self.budget <= 0:
            self.clear()

    def clear(self) -> None:
        self.position, self.error, self.seq = None, None, None
        self.failures = self.alone = self.clean = self.budget = 0
