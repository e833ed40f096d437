"""Match-key capture from events (pure): click ids, browser ids, IP/UA, consent."""

from __future__ import annotations

import pytest

from leadloop.conversions.capture import (
    MatchKeys,
    capture_keys,
    consent_signal,
    found_keys,
    has_browser_id,
    has_click_id,
    make_fbc,
)

AT = 1_800_000_000.5


def test_fbclid_in_a_page_url_becomes_fbc_with_capture_time() -> None:
    body = {"context": {"page": {"url": "https://x.test/?fbclid=AbC.dEf-1&utm_source=fb"}}}
    keys = capture_keys(MatchKeys(), body, AT)
    assert keys.fbc == f"fb.1.{int(AT * 1000)}.AbC.dEf-1"  # case and dots kept
    assert keys.fbc_at == AT
    assert has_click_id(keys) and not has_browser_id(keys)


def test_same_fbclid_keeps_the_first_fbc_and_a_new_one_replaces_it() -> None:
    body = {"properties": {"url": "https://x.test/?fbclid=one"}}
    first = capture_keys(MatchKeys(), body, AT)
    again = capture_keys(first, body, AT + 60)
    assert again is first
    newer = capture_keys(first, {"properties": {"url": "https://x.test/?fbclid=two"}}, AT + 120)
    assert newer.fbc == make_fbc("two", AT + 120)


def test_cookies_and_click_ids_from_properties_campaign_and_search() -> None:
    body = {
        "properties": {
            "search": "?gbraid=GB1&wbraid=WB1",
            "cookies": {"_fbp": "fb.1.1700000000000.99", "_ttp": "ttp-1", "_fbc": "fb.1.1.X"},
        },
        "context": {"campaign": {"name": "spring", "ttclid": "TT-9"}},
    }
    keys = capture_keys(MatchKeys(), body, AT)
    assert (keys.gbraid, keys.wbraid, keys.ttclid) == ("GB1", "WB1", "TT-9")
    assert (keys.fbp, keys.ttp, keys.fbc) == ("fb.1.1700000000000.99", "ttp-1", "fb.1.1.X")


def test_crm_webhook_properties_carry_gclid_and_lead_id() -> None:
    body = {"properties": {"hs_google_click_id": "Cj0-gclid", "leadgen_id": "123456789012345"}}
    keys = capture_keys(MatchKeys(), body, AT)
    assert keys.gclid == "Cj0-gclid" and keys.lead_id == "123456789012345"
    assert capture_keys(MatchKeys(), {"properties": {"lead_id": "12"}}, AT).lead_id is None


def test_malformed_values_are_ignored() -> None:
    body = {"properties": {"_fbp": "not a cookie", "gclid": "x" * 600, "ttclid": 5}}
    keys = capture_keys(MatchKeys(), body, AT)
    assert keys.fbp is None and keys.gclid is None
    assert keys.ttclid == "5"


def test_ip_and_user_agent_only_from_browser_events_latest_wins() -> None:
    web = {"context": {"userAgent": "UA-1", "ip": "198.51.100.1"}}
    keys = capture_keys(MatchKeys(), web, AT)
    assert (keys.ip, keys.user_agent, keys.web_at) == ("198.51.100.1", "UA-1", AT)
    server = {"context": {"ip": "10.0.0.1"}}  # a CRM webhook: no user agent
    assert capture_keys(keys, server, AT + 5) is keys
    older = capture_keys(keys, {"context": {"userAgent": "UA-0"}}, AT - 5)
    assert older.user_agent == "UA-1"


def test_consent_signal_from_context_latest_wins() -> None:
    yes = {"context": {"consent": {"categoryPreferences": {"advertising": True}}}}
    no = {"context": {"consent": {"categoryPreferences": {"advertising": False}}}}
    assert consent_signal(yes, ("categoryPreferences.advertising",)) is True
    assert consent_signal({"context": {}}, ("categoryPreferences.advertising",)) is None
    keys = capture_keys(MatchKeys(), yes, AT)
    assert keys.consent is True
    assert capture_keys(keys, no, AT + 1).consent is False
    assert capture_keys(keys, no, AT - 1).consent is True


def test_found_keys_later_sources_override_urls() -> None:
    body = {"properties": {"url": "https://x.test/?gclid=from-url", "gclid": "explicit"}}
    assert found_keys(body)["gclid"] == "explicit"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://shop.test/pricing?utm_source=news&ref=a", {}),
        ("https://shop.test/?gclid=G1&x=1", {"gclid": "G1"}),
        ("https://shop.test/?hs_google_click_id=G2", {"gclid": "G2"}),
        ("https://shop.test/?%67clid=G3", {"gclid": "G3"}),  # percent-encoded name: still read
        ("?_fbp=fb.1.2.3", {"fbp": "fb.1.2.3"}),
        ("https://shop.test/gclid-guide", {}),  # the word in the path, not a parameter
    ],
)
def test_urls_are_read_only_for_the_parameters_they_carry(
    url: str, expected: dict[str, str]
) -> None:
    # URLs without any of our parameter names skip parsing: the keys found are the same.
    assert found_keys({"properties": {"url": url}}) == expected
    assert found_keys({"context": {"page": {"url": url}}}) == expected


def test_a_query_repeated_in_properties_and_context_still_overrides_in_order() -> None:
    # The same query in `properties.url` and `context.page.url` is read once, at its later
    # place: it still overrides the `search` between them, as reading both would.
    body = {
        "properties": {"url": "https://s.test/p?gclid=A", "search": "?gclid=B"},
        "context": {"page": {"url": "https://s.test/p?gclid=A"}},
    }
    assert found_keys(body) == {"gclid": "A"}
    body["context"] = {"page": {"search": "?gclid=B"}}
    assert found_keys(body) == {"gclid": "B"}


def test_a_lead_id_or_cookie_in_other_digits_is_no_id() -> None:
    # Meta writes these ids in ASCII; the `\d` they were matched with took any script's digits,
    # and the value went to Meta as it was.
    body = {"properties": {"leadgen_id": "١٢٣٤٥٦٧٨٩٠١٢٣٤٥", "_fbp": "fb.١.١٧٠٠٠٠٠٠٠٠٠٠٠.99"}}
    keys = capture_keys(MatchKeys(), body, AT)
    assert keys.lead_id is None and keys.fbp is None
