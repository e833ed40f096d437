"""Reading fields from events and traits, and testing them with the playbook's operators."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, assert_never
from urllib.parse import parse_qs, urlsplit

from leadloop.log.model import Event
from leadloop.scoring.model import Condition, EventFilter, FitRule, Predicate

# "1,000", "201-500" (a range: its lower bound) and "500+" all read as numbers, because company
# size traits arrive in each of these shapes from enrichment tools and forms.
_NUMBER = re.compile(r"^\s*(\d[\d,]*(?:\.\d+)?)\s*(?:[-–]\s*\d[\d,]*(?:\.\d+)?|\+)?\s*$")


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        found = _NUMBER.match(value)
        if found:
            return float(found.group(1).replace(",", ""))
    return None


def _dig(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(value, Mapping):
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


def _equals(actual: Any, expected: Any, test: Predicate) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return _fold(actual, test) == _fold(expected, test)
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        number = to_number(actual)
        return number is not None and number == float(expected)
    return bool(actual == expected)


def _compare(actual: Any, test: Predicate) -> tuple[float, float] | None:
    number, limit = to_number(actual), to_number(test.value)
    return None if number is None or limit is None else (number, limit)


def _text(actual: Any) -> str | None:
    if isinstance(actual, bool) or not isinstance(actual, str | int | float):
        return None
    return str(actual)


def _test_one(actual: Any, test: Predicate) -> bool:
    match test.op:
        case "equals":
            return _equals(actual, test.value, test)
        case "in":
            return any(_equals(actual, option, test) for option in test.value)
        case "gt":
            pair = _compare(actual, test)
            return pair is not None and pair[0] > pair[1]
        case "gte":
            pair = _compare(actual, test)
            return pair is not None and pair[0] >= pair[1]
        case "lt":
            pair = _compare(actual, test)
            return pair is not None and pair[0] < pair[1]
        case "lte":
            pair = _compare(actual, test)
            return pair is not None and pair[0] <= pair[1]
        case "matches":
            assert test.pattern is not None, "the loader compiles every `matches` pattern"
            text = _text(actual)
            return text is not None and test.pattern.search(text) is not None
        case "starts_with":
            text = _text(actual)
            return text is not None and _fold(text, test).startswith(_fold(str(test.value), test))
        case "contains":
            text = _text(actual)
            return text is not None and _fold(str(test.value), test) in _fold(text, test)
        case "exists":
            return present(actual) == bool(test.value)
        case _:
            assert_never(test.op)


def present(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def check(actual: Any, test: Predicate) -> bool:
    """Test one value. A list passes when any of its items does (tags, interests)."""
    if test.op == "exists":
        return present(actual) == bool(test.value)
    if isinstance(actual, list | tuple):
        return any(_test_one(item, test) for item in actual)
    return _test_one(actual, test)


def matches_filter(event: Event, when: EventFilter) -> bool:
    if when.types:
        if event.type not in when.types:
            return False
    elif event.type == "internal":
        return False
    if when.names and event.event not in when.names:
        return False
    return all(condition_holds(event, condition) for condition in when.where)


def condition_holds(event: Event, condition: Condition) -> bool:
    return check(event_field(event, condition.field), condition.test)


def fit_value(
    rule: FitRule, traits: Mapping[str, Any], account_traits: Mapping[str, Any]
) -> tuple[str, Any] | None:
    """The first alternative field that is present, with its value; None when none is."""
    sources: list[Mapping[str, Any]] = []
    if rule.source in ("profile", "any"):
        sources.append(traits)
    if rule.source in ("account", "any"):
        sources.append(account_traits)
    for field in rule.fields:
        for source in sources:
            value = _dig(source, field.split("."))
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
