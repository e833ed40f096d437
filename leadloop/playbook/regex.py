"""Which regular expressions a `matches` condition may use.

They run on event values an attacker controls, in Python's backtracking `re`, inside the
processor: one slow match stalls every workspace's events behind it. Two shapes make a match
slow, and both are refused here, when the playbook is validated:

- exponential: a repeat inside a repeat (`(a+)+`, `(a*){2,}`) or an alternation inside a
  repeat (`(a|ab)+`); 30 characters already take seconds;
- polynomial: each long repeat (`*`, `+`, `{n,}`, up to more than `SHORT_REPEAT`) multiplies the
  work by the value's length, so more than `MAX_LONG_REPEATS` of them (`.*a.*a.*b`) take
  minutes on a few thousand characters.

What remains is at most quadratic in the value (with the scan of each start position, cubic),
and `scoring.model.MATCH_CHARS` bounds the value. Python's `re` has no public parse tree; its
parser module is the one `re.compile` itself uses.
"""

from __future__ import annotations

from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser  # type: ignore[attr-defined]
from typing import Any

SHORT_REPEAT = 10
MAX_LONG_REPEATS = 2
_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT}


def pattern_problem(pattern: str, flags: int = 0) -> str | None:
    """Why `pattern` (which compiles) could stall a match, or None."""
    long_repeats = 0

    def walk(items: Any, in_repeat: bool) -> str | None:
        nonlocal long_repeats
        for op, av in items:
            if op in _REPEATS:
                low, high, body = av
                if high > 1 and in_repeat:
                    return "a repeat inside a repeat, e.g. (a+)+, can take exponential time"
                if high > SHORT_REPEAT and high != low:  # (MAXREPEAT, unbounded, is large)
                    long_repeats += 1
                found = walk(body, in_repeat or high > 1)
            elif op == sre.BRANCH:
                if in_repeat:
                    return "an alternation inside a repeat, e.g. (a|ab)+, can take exponential time"
                found = _first(walk(branch, in_repeat) for branch in av[1])
            elif op == sre.GROUPREF_EXISTS:
                found = _first(walk(branch, in_repeat) for branch in av[1:] if branch)
            elif op in (sre.SUBPATTERN, sre.ASSERT, sre.ASSERT_NOT, sre.ATOMIC_GROUP):
                found = walk(av[-1] if op != sre.ATOMIC_GROUP else av, in_repeat)
            else:
                found = None
            if found is not None:
                return found
        return None

    found = walk(_parser.parse(pattern, flags), False)
    if found is None and long_repeats > MAX_LONG_REPEATS:
        found = (
            f"more than {MAX_LONG_REPEATS} long repeats (*, +, {{n,}}, {{n,m}} beyond "
            f"{SHORT_REPEAT}) can take "
            "polynomial time; `matches` searches anywhere in the value, so a leading or "
            "trailing .* is not needed"
        )
    return found


def _first(found: Any) -> str | None:
    return next((problem for problem in found if problem is not None), None)
