"""`matches` on a value the sender controls finishes in bounded time."""

from __future__ import annotations

import re
import time

import pytest

from leadloop.playbook.regex import pattern_problem
from leadloop.scoring.match import check
from leadloop.scoring.model import MATCH_CHARS, Predicate


def predicate(pattern: str) -> Predicate:
    return Predicate("matches", pattern, False, re.compile(pattern))


@pytest.mark.timeout(30)
def test_the_slowest_pattern_the_loader_allows_is_bounded_by_the_value_it_sees() -> None:
    """Two long repeats are allowed; on a 32 KB property (the largest a message can carry)
    this would backtrack for hours, on the first `MATCH_CHARS` characters it takes well
    under a second."""
    slow = "a.*a.*b"
    assert pattern_problem(slow) is None
    # CPU time of this thread, not wall time: the bound is on the work the match does
    # (about 0.2 s here), and on a loaded CI machine the wall clock also counts the wait for
    # a core, which is how a passing match can take seconds.
    started = time.thread_time()
    assert not check("a" * 32_000, predicate(slow))
    assert time.thread_time() - started < 2


def test_a_match_within_the_first_characters_of_a_long_value_is_found() -> None:
    url = "https://example.com/pricing?" + "utm=x&" * 1_000
    assert check(url, predicate("/pricing"))
    assert not check("x" * MATCH_CHARS + "/pricing", predicate("/pricing"))
