"""The metrics' arithmetic: rates over nobody are no rate, amounts in text are read as the
conversions read them, currencies are never added together, the funnel keeps stage order."""

from __future__ import annotations

import pytest

from leadloop.analytics import metrics
from leadloop.analytics.metrics import (
    JourneyCounts,
    MessageCounts,
    Revenue,
    add_order,
    channel_totals,
    currency,
    funnel,
    order_amount,
    rate,
)


def test_a_rate_over_nobody_is_none_not_zero() -> None:
    assert rate(0, 0) is None and rate(0, 4) == 0.0 and rate(1, 4) == 0.25
    report = MessageCounts("sms", None, None, 3, 0, 0, 0, 0, 0, 0, 3).report()
    assert report["open_rate"] is None and report["delivery_rate"] is None


@pytest.mark.parametrize(
    ("properties", "amount"),
    [
        ({"revenue": 12.5, "total": 99}, 12.5),  # revenue first
        ({"total": "1,234.50"}, 1234.5),  # thousands separators
        ({"revenue": "42,50", "total": 7}, 7.0),  # a decimal comma is no number: the next field
        ({"value": "1e400"}, None),  # infinity is no amount
        ({"revenue": True}, None),
        ({"revenue": -20}, -20.0),  # a refund sent as an order lowers revenue
        ({"revenue": "-20"}, -20.0),  # in text too, not an order of 0
        ({"revenue": "100-200", "total": 7}, 7.0),  # a range is no amount: the next field
        ({"revenue": "500+"}, None),
        ({"revenue": 1.5e308, "total": 12}, 12.0),  # past any real order: the next field
        ({"revenue": -2e12}, None),
        ({}, None),
    ],
)
def test_the_amount_of_an_order(properties: dict[str, object], amount: float | None) -> None:
    assert order_amount(properties) == amount


def test_orders_are_added_up_per_currency_and_people_counted_once() -> None:
    totals: dict[str, Revenue] = {}
    add_order(totals, "p1", {"revenue": 10, "currency": "eur"}, "XXX")
    add_order(totals, "p1", {"revenue": 5, "currency": " EUR "}, "XXX")
    add_order(totals, "p2", {"revenue": 7, "currency": "US$"}, "XXX")  # not a code: kept apart
    add_order(totals, None, {"currency": "EUR"}, "XXX")  # no amount, no profile yet
    eur = totals["EUR"].report()
    assert eur == {
        "currency": "EUR",
        "orders": 3,
        "revenue": 15.0,
        "customers": 1,
        "revenue_per_customer": 15.0,
        "orders_per_customer": 3.0,
    }
    assert totals["XXX"].report()["revenue"] == 7.0


def test_channel_totals_add_every_template_and_journey() -> None:
    rows = [
        MessageCounts("email", "a", "j", 4, 4, 3, 2, 1, 1, 0, 0),
        MessageCounts("email", "b", None, 6, 5, 5, 1, 1, 0, 1, 0),
        MessageCounts("whatsapp", "v", "j", 2, 2, 2, 2, 0, 0, 0, 0),
    ]
    email, whatsapp = channel_totals(rows)
    assert email == MessageCounts("email", None, None, 10, 9, 8, 3, 2, 1, 1, 0)
    assert email.report()["click_to_open"] == 2 / 3 and whatsapp.messages == 2


def test_lift_needs_both_groups() -> None:
    counts = JourneyCounts("j")
    counts.treated.entered, counts.treated.converted = 10, 3
    assert counts.report()["lift"] is None  # nobody held out: no lift to speak of
    counts.holdout.entered, counts.holdout.converted = 5, 1
    assert counts.report()["lift"] == pytest.approx(0.3 - 0.2)


def test_the_funnel_counts_everyone_who_reached_a_stage_or_a_later_one() -> None:
    moves = [
        ("lead", "lead", "a"),
        ("lead", "MQL", "a"),
        ("lead", "mql", "b"),  # straight past `lead`: it passed `lead` too; case ignored
        ("lead", "lead", "c"),
        ("lead", "retired", "d"),  # a stage the model no longer has
        ("other", "MQL", "e"),  # a model no longer in the playbook
    ]
    (lead,) = funnel(moves, {"lead": ["subscriber", "lead", "MQL", "SQL"]})
    assert lead == {
        "model": "lead",
        "stages": [
            {"stage": "subscriber", "reached": 3, "from_previous": None},
            {"stage": "lead", "reached": 3, "from_previous": 1.0},
            {"stage": "MQL", "reached": 2, "from_previous": 2 / 3},
            {"stage": "SQL", "reached": 0, "from_previous": 0.0},
        ],
    }
    (empty,) = funnel([], {"lead": ["lead", "MQL"]})
    assert [s["from_previous"] for s in empty["stages"]] == [None, None]


def test_a_currency_code_is_three_latin_letters() -> None:
    # ISO 4217 codes are A-Z: letters of other scripts are no code (and "ßab" is four once
    # upper-cased), so such orders are kept apart with the ones that name none.
    for odd in ("ÄÖÜ", "ßab", "руб", "€ur"):
        assert currency({"currency": odd}, "XXX") == "XXX", odd
    assert currency({"currency": "chf"}, "XXX") == "CHF"


def test_two_orders_near_a_floats_limit_do_not_turn_revenue_into_nothing() -> None:
    """Two orders of 1.5e308 summed to infinity, shown as `null` revenue for the whole window:
    one client with the public write key could blank a currency's revenue."""
    totals: dict[str, Revenue] = {}
    for amount in (1.5e308, 1.5e308, 20.0):
        add_order(totals, "p1", {"revenue": amount, "currency": "USD"}, "XXX")
    assert totals["USD"].report()["revenue"] == 20.0


def _revenue(*orders: tuple[str, float]) -> list[metrics.Revenue]:
    totals: dict[str, metrics.Revenue] = {}
    for code, amount in orders:
        metrics.add_order(totals, "p", {"revenue": amount, "currency": code}, "XXX")
    return list(totals.values())


def test_roas_is_unknown_with_a_reason_when_revenue_cannot_be_set_against_spend() -> None:
    """Orders without a currency (`XXX`) held the window's revenue, and ROAS on USD spend read
    0.00×: a campaign that paid for itself looked like one that sold nothing."""
    [usd] = metrics.acquisition({"USD": 100.0}, _revenue(("", 250.0)), 2)
    assert usd["roas"] is None and usd["cac"] == 50.0
    assert "without a currency" in usd["roas_unknown"]
    # Some of it labelled: the rest might be USD too, so the ratio is still not known.
    [usd] = metrics.acquisition({"USD": 100.0}, _revenue(("USD", 50.0), ("", 250.0)), 2)
    assert usd["roas"] is None and "without a currency" in usd["roas_unknown"]
    # Revenue only in another currency: not converted, so not a ROAS of 0 either.
    [usd] = metrics.acquisition({"USD": 100.0}, _revenue(("EUR", 80.0)), 1)
    assert usd["roas"] is None and "EUR" in usd["roas_unknown"]
    # Known: revenue in the spend's currency (others beside it are documented as not counted),
    # orders without a currency and without an amount, or no revenue at all.
    for orders in ((("USD", 50.0), ("EUR", 80.0)), (("USD", 50.0), ("", 0.0))):
        [usd] = metrics.acquisition({"USD": 100.0}, _revenue(*orders), 1)
        assert (usd["roas"], usd["roas_unknown"]) == (0.5, None)
    [usd] = metrics.acquisition({"USD": 100.0}, [], 0)
    assert (usd["roas"], usd["roas_unknown"]) == (0.0, None)
    [usd] = metrics.acquisition({"USD": 0.0}, _revenue(("USD", 5.0)), 0)
    assert usd["roas"] is None and usd["roas_unknown"] == "no ad spend"


def test_spend_of_days_the_window_covers_in_part_counts_in_proportion() -> None:
    day = 1_793_491_200.0  # 2026-11-01T00:00:00Z
    days = [("2026-11-01", "USD", 100.0), ("2026-11-02", "USD", 240.0)]
    later = day + 10 * 86_400
    last = metrics.DAY - metrics.RESOLUTION
    assert metrics.window_spend(days, day, day + 2 * metrics.DAY - 0.001, later) == {"USD": 340.0}
    assert metrics.window_spend(days, day + 0.75 * metrics.DAY, day + last, later) == {"USD": 25.0}
    assert metrics.window_spend(days, day + metrics.DAY, day + metrics.DAY, later) == {
        "USD": pytest.approx(240.0 * 0.001 / 86_400, rel=1e-3)  # one millisecond
    }
    # The day of `now` holds what was spent so far: a window to now counts all of it, one to
    # half of the time gone by counts half.
    now = day + metrics.DAY + 6 * 3600
    assert metrics.window_spend(days, day + metrics.DAY, now, now) == {"USD": 240.0}
    half = day + metrics.DAY + 3 * 3600 - metrics.RESOLUTION
    assert metrics.window_spend(days, day + metrics.DAY, half, now) == {"USD": pytest.approx(120.0)}


def test_an_amount_in_one_scripts_digits_is_the_number_and_a_mixed_one_none() -> None:
    assert metrics.amount("١,٢٣٤.٥٠") == 1234.5
    assert metrics.amount("４２") == 42.0
    assert metrics.amount("4٢") is None
    assert metrics.amount("4²") is None
