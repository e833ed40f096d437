"""What a mapping reads from an event body (`leadloop.conversions.fields`), on hostile input."""

from __future__ import annotations

from leadloop.conversions.config import Mapping
from leadloop.conversions.fields import (
    MAX_ID,
    contents_of,
    currency_of,
    event_id_for,
    order_id_in,
    safe_order_id,
    value_of,
)
from leadloop.digest import sha256_hex

HUGE = "9" * 400
"""Digits only, so `to_number` takes it, but past a float's range: `float()` makes it infinity."""


def test_a_number_past_a_floats_range_is_no_quantity_price_or_value() -> None:
    # `int(inf)` raised OverflowError inside the processor's batch, which is retried forever:
    # one such checkout stopped every later event. Infinity as a value went out as JSON null.
    body = {
        "properties": {
            "revenue": HUGE,
            "products": [{"product_id": "sku-1", "quantity": HUGE, "price": HUGE}],
        }
    }
    (content,) = contents_of(body, "properties.products")
    assert (content.id, content.quantity, content.item_price) == ("sku-1", 1, None)
    mapping = Mapping(id="purchase", event_name="Purchase", value="properties.revenue")
    assert value_of(body, mapping) is None
    assert value_of({"properties": {"revenue": "42.50"}}, mapping) == 42.5


def test_a_decimal_comma_is_not_read_as_a_thousands_separator() -> None:
    # `to_number` drops commas (`1,000` employees), so a European shop's "42,50" became a value
    # of 4250 at Meta, Google and TikTok, and a price of 4250 in its contents.
    mapping = Mapping(id="purchase", event_name="Purchase", value="properties.revenue")
    for written, expected in [("42,50", None), ("1.234,56", None), ("1,234.50", 1234.5)]:
        body = {"properties": {"revenue": written, "products": [{"id": "a", "price": written}]}}
        assert value_of(body, mapping) == expected
        assert contents_of(body, "properties.products")[0].item_price == expected


def test_an_order_id_that_went_through_a_float_is_its_digits() -> None:
    # A CSV or spreadsheet import writes order 1001 as 1001.0: it was sent as order id "1001.0"
    # (Meta order_id, Google transactionId, our event id), so it never matched the pixel's or
    # the tag's 1001 and Google counted the purchase twice. A product id the same.
    for written in (1001, 1001.0, "1001"):
        assert order_id_in({"properties": {"order_id": written}}) == "1001", written
    assert order_id_in({"properties": {"order_id": 1001.5}}) == "1001.5"
    (content,) = contents_of({"properties": {"products": [{"sku": 42.0}]}}, "properties.products")
    assert content.id == "42"


def test_an_order_id_leaves_bounded_and_without_an_email() -> None:
    assert safe_order_id("1001") == "1001" and safe_order_id(None) is None
    long = "x" * (MAX_ID + 1)
    assert safe_order_id(long) == sha256_hex(long)[:32]
    email = "ana@example.com-7"
    assert safe_order_id(email) == sha256_hex(email)[:32]
    # The event id made from the safe order id is the one made from the raw one before.
    for raw in (email, long, "1001"):
        safe = safe_order_id(raw)
        assert safe is not None
        assert event_id_for("order", safe, "Purchase") == event_id_for("order", raw, "Purchase")


def test_a_currency_is_three_latin_letters_else_the_default() -> None:
    """`str.isalpha` takes any script's letters: `ÄÖÜ` or `ДОЛ` went out as a currency, which
    Meta checks (ISO 4217) and refuses with the whole request (capi.md §1.2)."""
    mapping = Mapping(
        id="purchase",
        event_name="Purchase",
        currency="properties.currency",
        default_currency="EUR",
    )
    for written, expected in (
        ("usd", "USD"),
        (" gbp ", "GBP"),
        ("ÄÖÜ", "EUR"),
        ("ДОЛ", "EUR"),
        ("US$", "EUR"),
        ("", "EUR"),
    ):
        assert currency_of({"properties": {"currency": written}}, mapping) == expected, written
