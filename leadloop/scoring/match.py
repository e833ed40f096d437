"""Reading fields from events and traits, and testing them with the playbook's operators."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, assert_never
from urllib.parse import parse_qs, urlsplit

from leadloop.digits import ascii_digits
from leadloop.log.model import Event
from leadloop.scoring.model import (
    MATCH_CHARS,
    Condition,
    EventFilter,
    FitRule,
    Predicate,
    TraitSource,
)

# "1,000", "201-500" (a range: its lower bound) and "500+" all read as numbers, because company
# size traits arrive in each of these shapes from enrichment tools and forms. Other scripts'
# digits are made ASCII first (`ascii_digits`), so that a mix of scripts is no number.
_DIGITS = r"[0-9][0-9,]*(?:\.[0-9]+)?"
_NUMBER = re.compile(rf"^\s*({_DIGITS})\s*(?:[-–]\s*{_DIGITS}|\+)?\s*$")


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = ascii_digits(value)
        found = None if text is None else _NUMBER.match(text)
        if found:
            return float(found.group(1).replace(",", ""))
    return None


def _dig(value: Any, parts: list[str]) -> Any:
    for part in parts:
        # The exact-dict test first: bodies and traits are dicts, and the ABC check is slow.
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def page_url(event: Event) -> str | None:
    for candidate in (event.properties.get("url"), _dig(event.context, ["page", "url"])):
        if isinstance(candidate, str) and candidate:
            return candidate
    return None


def page_path(event: Event) -> str | None:
    """`properties.path`, else `context.page.path`, else the path of the page URL."""
    candidate = event.properties.get("path")
    if isinstance(candidate, str) and candidate:
        return candidate
    candidate = _dig(event.context, ["page", "path"])
    if isinstance(candidate, str) and candidate:
        return candidate
    url = page_url(event)
    if url is None:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


def event_field(event: Event, field: str) -> Any:
    if field == "page.path":
        return page_path(event)
    if field == "page.url":
        return page_url(event)
    if field.startswith("page.query."):
        url = page_url(event)
        if url is None:
            return None
        try:
            values = parse_qs(urlsplit(url).query).get(field.removeprefix("page.query."))
        except ValueError:
            return None
        return values[0] if values else None
    head, _, rest = field.partition(".")
    parts = rest.split(".") if rest else []
    # The Event accessors know where clients put these (e.g. rudder sends traits in context).
    if head == "properties":
        return _dig(event.properties, parts)
    if head == "traits":
        return _dig(event.traits, parts)
    if head == "context":
        return _dig(event.context, parts)
    return _dig(event.body, [head, *parts])


def _fold(value: str, test: Predicate) -> str:
    return value.casefold() if test.ignore_case else value


def _text(actual: Any) -> str | None:
    if isinstance(actual, bool) or not isinstance(actual, str | int | float):
        return None
    return str(actual)


def present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


Tester = Callable[[Any], bool]
K = TypeVar("K")
V = TypeVar("V")
_TESTERS: dict[int, tuple[Predicate, Tester]] = {}
_CONDITIONS: dict[int, tuple[Condition, Callable[[Event], bool]]] = {}


def check(actual: Any, test: Predicate) -> bool:
    """Test one value. A list passes when any of its items does (tags, interests).

    Each predicate is turned into a function once (its operator dispatched, its value folded
    and converted) and memoised by identity, like `decide._candidates`: predicates live as long
    as the playbook that declares them, and checks run for every event."""
    return _memo(_TESTERS, test, _tester)(actual)


def _memo(memo: dict[int, tuple[K, V]], key: K, build: Callable[[K], V]) -> V:
    """`build(key)` memoised by identity; the entry holds the key, so an `id()` reused by
    another object after garbage collection is never mistaken for it."""
    entry = memo.get(id(key))
    if entry is None or entry[0] is not key:
        if len(memo) > 4096:
            memo.clear()
        entry = (key, build(key))
        memo[id(key)] = entry
    return entry[1]


def _tester(test: Predicate) -> Tester:
    if test.op == "exists":
        wanted = bool(test.value)
        return lambda actual: present(actual) == wanted
    one = _test_one(test)

    def tester(actual: Any) -> bool:
        if isinstance(actual, list | tuple):
            return any(one(item) for item in actual)
        return one(actual)

    return tester


def _test_one(test: Predicate) -> Tester:
    """The test of one (non-list) value."""
    match test.op:
        case "equals":
            return _equals(test.value, test.ignore_case)
        case "in":
            options = tuple(_equals(option, test.ignore_case) for option in test.value)
            return lambda actual: any(equals(actual) for equals in options)
        case "gt" | "gte" | "lt" | "lte":
            limit, compare = to_number(test.value), _COMPARE[test.op]
            if limit is None:
                return lambda actual: False

            def compared(actual: Any) -> bool:
                number = to_number(actual)
                return number is not None and compare(number, limit)

            return compared
        case "matches":
            pattern = test.pattern
            assert pattern is not None, "the loader compiles every `matches` pattern"

            def matches(actual: Any) -> bool:
                text = actual if type(actual) is str else _text(actual)
                return text is not None and pattern.search(text[:MATCH_CHARS]) is not None

            return matches
        case "starts_with" | "contains":
            needle, fold = _fold(str(test.value), test), test.ignore_case
            starts = test.op == "starts_with"

            def finds(actual: Any) -> bool:
                text = actual if type(actual) is str else _text(actual)
                if text is None:
                    return False
                if fold:
                    text = text.casefold()
                return text.startswith(needle) if starts else needle in text

            return finds
        case "exists":
            # `_tester` answers `exists` on the whole value before lists are looked into.
            wanted = bool(test.value)
            return lambda actual: present(actual) == wanted
        case _:
            assert_never(test.op)


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _equals(expected: Any, ignore_case: bool) -> Tester:
    if isinstance(expected, str):
        folded = expected.casefold() if ignore_case else expected
        # A number on either side compares numerically, so a quoted `'1000'` equals an event's
        # 1000 as `1000` equals its "1,000"; text against text stays text (zip "01067").
        number = to_number(expected)

        def equals_text(actual: Any) -> bool:
            if isinstance(actual, str):
                return (actual.casefold() if ignore_case else actual) == folded
            if number is not None and type(actual) in (int, float):
                return float(actual) == number
            return bool(actual == expected)

        return equals_text
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        wanted = float(expected)

        def equals_number(actual: Any) -> bool:
            number = to_number(actual)
            return number is not None and number == wanted

        return equals_number
    return lambda actual: bool(actual == expected)


def matches_filter(event: Event, when: EventFilter) -> bool:
    if when.types:
        if event.type not in when.types:
            return False
    elif event.type == "internal":
        return False
    if when.names and event.event not in when.names:
        return False
    return conditions_hold(event, when.where)


def conditions_hold(event: Event, where: tuple[Condition, ...]) -> bool:
    return all(condition_holds(event, condition) for condition in where)


def where_test(where: tuple[Condition, ...]) -> Callable[[Event], bool]:
    """`conditions_hold(event, where)` as one function, for callers that keep it."""
    tests = tuple(_memo(_CONDITIONS, condition, _condition_test) for condition in where)
    if not tests:
        return lambda event: True
    if len(tests) == 1:
        return tests[0]
    return lambda event: all(test(event) for test in tests)


def condition_holds(event: Event, condition: Condition) -> bool:
    return _memo(_CONDITIONS, condition, _condition_test)(event)


def _condition_test(condition: Condition) -> Callable[[Event], bool]:
    test = _memo(_TESTERS, condition.test, _tester)
    field = condition.field
    if field == "page.path":
        return lambda event: test(page_path(event))
    return lambda event: test(event_field(event, field))


def fit_value(
    rule: FitRule, traits: Mapping[str, Any], account_traits: Mapping[str, Any]
) -> tuple[str, Any] | None:
    """The first alternative field that is present, with its value; None when none is."""
    return trait_value(rule.fields, rule.source, traits, account_traits)


def trait_value(
    fields: tuple[str, ...],
    source: TraitSource,
    traits: Mapping[str, Any],
    account_traits: Mapping[str, Any],
) -> tuple[str, Any] | None:
    """The first of `fields` present in the profile's or its account's traits, with its value."""
    sources: list[Mapping[str, Any]] = []
    if source in ("profile", "any"):
        sources.append(traits)
    if source in ("account", "any"):
        sources.append(account_traits)
    for field in fields:
        for found in sources:
            value = _dig(found, field.split("."))
            if present(value):
                return field, value
    return None


def fit_holds(
    rule: FitRule, traits: Mapping[str, Any], account_traits: Mapping[str, Any]
) -> tuple[bool, str]:
    """Whether the rule holds, and the value it was decided on (for the ledger)."""
    found = fit_value(rule, traits, account_traits)
    if found is None:
        return (rule.test.op == "exists" and not rule.test.value), "no value"
    field, value = found
    return check(value, rule.test), f"{field}={value!r}"
