"""Campaign and funnel metrics: pure arithmetic over the counts `analytics.queries` reads.

Every rate is a share of the messages or people it names, `None` when that count is zero (a
rate of 0 % over nobody would read as a failed campaign). Definitions, as the dashboard and
`docs/metrics.md` state them:

* delivered: sent and not bounced or failed afterwards (a sent email with no bounce counts as
  delivered, as email service providers count it; WhatsApp's failed receipt after `sent` does not);
* opened: an open or a click (a click in a mail whose images were blocked is an open nobody saw);
* open rate and click rate (CTR): opened and clicked over delivered; click-to-open: clicked over
  opened;
* conversion rate: entrants of a journey who reached its goal, over its entrants; lift: the
  treated group's rate minus the holdout's;
* revenue per customer: revenue over the distinct people who ordered, per currency (amounts in
  different currencies are never added up).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from leadloop.digits import ascii_digits

NO_CURRENCY = "XXX"
"""ISO 4217's code for "no currency": orders that name none are kept apart, not guessed."""
REVENUE_FIELDS = ("revenue", "total", "value")
"""Where an `Order Completed` carries its amount, in the order the Segment ecommerce spec ranks
them."""


_CODE = re.compile(r"[A-Za-z]{3}")
_AMOUNT = re.compile(r"\s*[-+]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?\s*")
"""An amount in text (its digits made ASCII by `ascii_digits`): digits, commas only between groups of three (`42,50` is a decimal comma,
no number here), a point before the decimals, an optional sign. Nothing else: the scoring's
reading of traits takes `201-500` and `500+` as their first number, a guess no amount may make."""


def amount(value: Any) -> float | None:
    """A finite number, or a text that is one whole (see `_AMOUNT`); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (text := ascii_digits(value)) and _AMOUNT.fullmatch(text):
        number = float(text.replace(",", ""))  # hundreds of digits: infinity, refused below
    else:
        return None
    return number if math.isfinite(number) else None


MAX_ORDER_AMOUNT = 1e12
"""A trillion in any currency: past any real order, and far enough below a float's limit that
no count of orders sums to infinity."""


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class MessageCounts:
    channel: str
    template: str | None
    journey: str | None
    messages: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    bounced: int
    complained: int
    failed: int

    def report(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "delivery_rate": rate(self.delivered, self.sent),
            "open_rate": rate(self.opened, self.delivered),
            "click_rate": rate(self.clicked, self.delivered),
            "click_to_open": rate(self.clicked, self.opened),
            "bounce_rate": rate(self.bounced, self.sent),
        }


def channel_totals(rows: Iterable[MessageCounts]) -> list[MessageCounts]:
    """The same counts added up per channel, all templates and journeys together."""
    totals: dict[str, list[int]] = {}
    for row in rows:
        counts = totals.setdefault(row.channel, [0] * 8)
        for i, value in enumerate(_numbers(row)):
            counts[i] += value
    return [MessageCounts(ch, None, None, *counts) for ch, counts in sorted(totals.items())]


def _numbers(row: MessageCounts) -> tuple[int, ...]:
    return (
        row.messages,
        row.sent,
        row.delivered,
        row.opened,
        row.clicked,
        row.bounced,
        row.complained,
        row.failed,
    )


@dataclass
class Group:
    entered: int = 0
    converted: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "entered": self.entered,
            "converted": self.converted,
            "conversion_rate": rate(self.converted, self.entered),
        }


@dataclass
class JourneyCounts:
    journey: str
    treated: Group = field(default_factory=Group)
    holdout: Group = field(default_factory=Group)

    def report(self) -> dict[str, Any]:
        treated, holdout = self.treated.report(), self.holdout.report()
        rates = (treated["conversion_rate"], holdout["conversion_rate"])
        lift = None if None in rates else rates[0] - rates[1]
        return {"id": self.journey, "treated": treated, "holdout": holdout, "lift": lift}


def order_amount(properties: Mapping[str, Any]) -> float | None:
    """The order's amount: the first of `revenue`, `total`, `value` that is an `amount` (text
    such as `"42.50"` or `"1,234.50"` too; a decimal comma or a range is no number). A negative
    amount (a refund sent as an order) counts as it is; one beyond `MAX_ORDER_AMOUNT` either
    way is no amount (two near a float's limit summed to infinity, and the window's revenue
    showed as nothing)."""
    for name in REVENUE_FIELDS:
        found = amount(properties.get(name))
        if found is not None and abs(found) <= MAX_ORDER_AMOUNT:
            return found
    return None


def currency(properties: Mapping[str, Any], default: str) -> str:
    """The order's ISO 4217 code: three letters A-Z (`str.isalpha` takes any script's letters,
    which gave `ÄÖÜ` a revenue line of its own), upper-cased."""
    found = properties.get("currency")
    if isinstance(found, str) and _CODE.fullmatch(found.strip()):
        return found.strip().upper()
    return default


@dataclass
class Revenue:
    currency: str
    orders: int = 0
    revenue: float = 0.0
    customers: set[str] = field(default_factory=set)

    def report(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "orders": self.orders,
            "revenue": round(self.revenue, 2),
            "customers": len(self.customers),
            "revenue_per_customer": (
                round(self.revenue / len(self.customers), 2) if self.customers else None
            ),
            "orders_per_customer": rate(self.orders, len(self.customers)),
        }


def add_order(
    totals: dict[str, Revenue], profile_id: str | None, properties: Mapping[str, Any], default: str
) -> None:
    """Count one `Order Completed`; an order without an amount counts as an order of 0."""
    code = currency(properties, default)
    entry = totals.setdefault(code, Revenue(code))
    entry.orders += 1
    entry.revenue += order_amount(properties) or 0.0
    if profile_id:
        entry.customers.add(profile_id)


StageMove = tuple[str, str, str]
"""(model, stage, person): a person moved into that stage of that model."""


def funnel(moves: Iterable[StageMove], stages: Mapping[str, list[str]]) -> list[Any]:
    """Per model, its stages in order with the people who reached each in the window: moved into
    it or into a later one (a lead scored straight past `lead` into `MQL` passed `lead` too),
    so each count holds the next; and the share of the previous stage's count (`None` for the
    first, or over nobody). Moves into a stage the model no longer has are left out."""
    ranks = {
        model: {n.casefold(): i for i, n in enumerate(names)} for model, names in stages.items()
    }
    best: dict[tuple[str, str], int] = {}
    for model, stage, person in moves:
        rank = ranks.get(model, {}).get(stage.casefold())
        if rank is not None and rank > best.get((model, person), -1):
            best[(model, person)] = rank
    out = []
    for model, names in stages.items():
        at_least = [0] * len(names)
        for (owner, _person), rank in best.items():
            if owner == model:
                for i in range(rank + 1):
                    at_least[i] += 1
        rows = []
        for i, name in enumerate(names):
            previous = at_least[i - 1] if i else None
            rows.append(
                {
                    "stage": name,
                    "reached": at_least[i],
                    "from_previous": None if previous is None else rate(at_least[i], previous),
                }
            )
        out.append({"model": model, "stages": rows})
    return out


DAY = 86_400.0
RESOLUTION = 0.001
"""A window's `until` is included as the millisecond it starts (the tracking API's finest
time), so a window ending on a date's last instant covers that whole day."""


def window_spend(
    days: Iterable[tuple[str, str, float]], since: float, until: float, now: float
) -> dict[str, float]:
    """Per currency, the spend of the window `[since, until]` from spend per UTC day (`days`:
    `YYYY-MM-DD`, currency, amount): each day's amount times the share of the day the window
    covers, spend being taken as even through its day. Counted whole, a window from noon to
    noon had two days of spend against one day of orders, and the default 30 days up to now
    had 31. The day of `now` is not over: its spend, imported so far, is spread over the part
    of it gone by, so a window to now counts all of it."""
    end = until + RESOLUTION
    totals: dict[str, float] = {}
    for day, code, amount in days:
        start = datetime.combine(date.fromisoformat(day), time(), UTC).timestamp()
        stop = now if start < now < start + DAY else start + DAY
        covered = min(end, stop) - max(since, start)
        if covered < RESOLUTION / 2:
            continue
        # Within half a millisecond of all of it is all of it (float sums of bounds).
        span = stop - start
        share = 1.0 if covered > span - RESOLUTION / 2 else covered / span
        totals[code] = totals.get(code, 0.0) + amount * share
    return totals


def acquisition(
    spend: Mapping[str, float], revenue: Iterable[Revenue], new_customers: int
) -> list[dict[str, Any]]:
    """Per currency of spend: CAC (spend over the people whose first order is in the window)
    and ROAS (revenue over spend, both in that currency). Blended, not attributed: every
    customer and every order of the window against every ad spent in it, as a marketing team
    reads a month. Currencies are not converted: revenue in another currency is not counted.

    ROAS is `None` with `roas_unknown` saying why when the revenue cannot be set against the
    spend (`roas_unknown`); 0 only when the window really sold nothing in that currency."""
    by_currency = {r.currency: r.revenue for r in revenue}
    out = []
    for code, amount in sorted(spend.items()):
        earned = by_currency.get(code, 0.0)
        unknown = roas_unknown(code, amount, by_currency)
        out.append(
            {
                "currency": code,
                "spend": round(amount, 2),
                "new_customers": new_customers,
                "revenue": round(earned, 2),
                "cac": round(amount / new_customers, 2) if new_customers else None,
                "roas": None if unknown else round(earned / amount, 4),
                "roas_unknown": unknown,
            }
        )
    return out


def roas_unknown(code: str, spend: float, by_currency: Mapping[str, float]) -> str | None:
    """Why ROAS on `spend` in `code` cannot be told, or None. A ratio of 0 said "sold
    nothing" where the window's revenue was there but in no currency (part of it could be
    `code`'s) or only in other currencies, which are not converted."""
    if not spend:
        return "no ad spend"
    unlabelled = by_currency.get(NO_CURRENCY, 0.0)
    if unlabelled:
        return (
            f"orders without a currency ({NO_CURRENCY}) hold {unlabelled:.2f} of revenue, "
            f"which cannot be set against {code} spend"
        )
    others = sorted(c for c, v in by_currency.items() if c != code and v)
    if code not in by_currency and others:
        return f"the window's revenue is in {', '.join(others)} only; currencies are not converted"
    return None
