"""Reading ad-spend exports: all or nothing, every fault named by line and column."""

from __future__ import annotations

import pytest

from leadloop.analytics import spend
from leadloop.analytics.spend import SpendFileError, SpendRow, parse_spend


def test_an_export_is_read_with_its_header_in_any_order_and_case() -> None:
    text = (
        "\ufeffAmount,Currency,Date,Source,Campaign\r\n"
        '"1,200.50",usd,2026-11-01,Meta,"Retargeting, EU"\r\n'
        "300,USD,2026-11-01,google,\r\n"
        "\r\n"
        '99.5,USD,2026-11-01,META,"Retargeting, EU"\r\n'  # same key: added together
        ",,,,\r\n"
    )
    assert parse_spend(text) == [
        SpendRow("2026-11-01", "google", "", "USD", 300.0),
        SpendRow("2026-11-01", "meta", "Retargeting, EU", "USD", 1300.0),
    ]
    assert parse_spend("date,source,amount,currency\n2026-02-28,tiktok,0,eur\n") == [
        SpendRow("2026-02-28", "tiktok", "", "EUR", 0.0)
    ]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty file"),
        ("date,source,amount\n", "the header must name"),
        ("date,source,amount,currency,budget\n", "'budget'"),
        ("date,source,amount,currency,date\n", "once each"),
        ("date,source,amount,currency\n2026-11-01,meta,12\n", ":2: expected 4 columns, found 3"),
        ("date,source,amount,currency\n11/01/2026,meta,12,USD\n", ":2: date: expected YYYY-MM-DD"),
        ("date,source,amount,currency\n2026-02-30,meta,12,USD\n", ":2: date"),
        ("date,source,amount,currency\n2026-11-01,,12,USD\n", ":2: source: must not be empty"),
        ("date,source,amount,currency\n2026-11-01,meta,12,US$\n", ":2: currency"),
        ("date,source,amount,currency\n2026-11-01,meta,-3,USD\n", ":2: amount"),
        ('date,source,amount,currency\n2026-11-01,meta,"42,50",EUR\n', ":2: amount"),
        ("date,source,amount,currency\n2026-11-01,meta,1e999,USD\n", ":2: amount"),
        ("date,source,amount,currency\n2026-11-01,meta,NaN,USD\n", ":2: amount"),
        # A range or a "more than" is no amount: both were read as their first number.
        ("date,source,amount,currency\n2026-11-01,meta,100-200,USD\n", ":2: amount"),
        ("date,source,amount,currency\n2026-11-01,meta,500+,USD\n", ":2: amount"),
        ("date,source,amount,currency\n2026-11-01,me\x07ta,1,USD\n", ":2: source: control"),
        ("date,source,amount,currency\n2026-11-01," + "m" * 201 + ",1,USD\n", "at most 200"),
    ],
)
def test_a_bad_export_is_refused_whole_with_the_line_and_column(text: str, words: str) -> None:
    good = "2026-11-02,meta,5,USD\n"
    with pytest.raises(SpendFileError) as raised:
        parse_spend(text + (good if text.count("\n") > 1 else ""), "export.csv")
    assert words in str(raised.value) and str(raised.value).startswith("export.csv")


def test_many_faults_are_listed_up_to_a_point(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "date,source,amount,currency\n" + "bad,meta,1,USD\n" * 50
    with pytest.raises(SpendFileError) as raised:
        parse_spend(text)
    lines = str(raised.value).splitlines()
    assert len(lines) == 21 and lines[-1] == "... and 30 more"
    monkeypatch.setattr(spend, "MAX_ROWS", 3)
    with pytest.raises(SpendFileError, match="more than 3 rows"):
        parse_spend("date,source,amount,currency\n" + "2026-11-01,meta,1,USD\n" * 4)


def test_a_fault_is_reported_on_the_line_an_editor_shows_after_a_quoted_line_break() -> None:
    """A quoted cell that holds a line break spans two lines: the faults after it were named by
    the row's number, one line before where the file has them."""
    text = (
        "date,source,campaign,amount,currency\n"
        '2026-11-01,meta,"spring\nsale",5,USD\n'  # lines 2 and 3
        "2026-11-01,google,,oops,USD\n"  # line 4
    )
    with pytest.raises(SpendFileError) as raised:
        parse_spend(text, "export.csv")
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("export.csv:2: campaign: control characters"), lines
    assert lines[1].startswith("export.csv:4: amount"), lines
