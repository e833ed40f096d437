"""A date trait that is a valid ISO time but not a UTC `datetime` is no date (the journey's
wait reports the trait missing), rather than an OverflowError the processor retries forever."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from leadloop.journeys.runner import trait_instant

UTC = ZoneInfo("UTC")


@pytest.mark.parametrize("value", ["9999-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00"])
def test_a_time_beyond_the_years_datetime_holds_is_no_date(value: str) -> None:
    assert trait_instant(value, UTC) is None


def test_times_at_the_edges_still_read() -> None:
    assert trait_instant("9999-12-31T09:00:00-14:00", UTC) == pytest.approx(253402297200.0)
    assert trait_instant("2024-05-01", UTC) == 1714521600.0


@pytest.mark.parametrize("value", [1717027200000, "1717027200000", " 1717027200000 "])
def test_epoch_milliseconds_in_a_string_read_as_the_number_does(value: object) -> None:
    # HubSpot's webhooks carry a contact's date properties as epoch milliseconds in a string.
    assert trait_instant(value, UTC) == 1717027200.0  # 2024-05-30, not the year 56,000


def test_a_date_typed_in_one_scripts_digits_reads_as_the_ascii_one() -> None:
    assert trait_instant("٢٠٢٤-٠٥-٠١", UTC) == 1714521600.0
    assert trait_instant("١٧١٧٠٢٧٢٠٠٠٠٠", UTC) == 1717027200.0
    assert trait_instant("2024-05-0١", UTC) is None
    assert trait_instant("171702720000٠", UTC) is None
