"""Copy variants: the guardrails every candidate passes, and the offline template provider."""

from __future__ import annotations

import pytest

from leadloop.channels.templates import sample_context
from leadloop.personalization.copy import Brief, guard, template_variants

BRIEF = Brief(
    base="Your guide, {{ traits.first_name | default('there') }}",
    facts=("Five steps to your first automated journey", "Used by 1,200 teams"),
)
SAMPLE = sample_context()


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ("Get 30% off your guide", "figure not in the brief: 30%"),
        ("Your guide: $49 today", "figure not in the brief: $49"),
        ("Used by 5,000 teams", "figure not in the brief: 5,000"),
        ("Used by 1,201 teams", "figure not in the brief: 1,201"),
        ("Used by 12,00 teams", "figure not in the brief: 12,00"),
        ("Your FREE guide is here", "shouting: FREE"),
        ("Your guide is here!!", "more than one '!'"),
        ("Act now: your guide", "spam phrase: act now"),
        ("Click here for five steps", "spam phrase: click here"),
        ("Your guide, {{ traits.first_name ", "template:"),
        ("Hi {{ secret_key }}", "template:"),
        ("{{ traits.first_name.__class__ }}", "template:"),
        ("Five steps to your first automated journey, with notes " + "x" * 40, "characters"),
        ("your guide, {{ traits.first_name | default('there') }} ", "the same as the template"),
        ("Your guide\nis here", "more than one line"),
        ("   ", "empty"),
    ],
)
def test_the_guard_refuses_with_the_reason(candidate: str, problem: str) -> None:
    verdict = guard(candidate, BRIEF, "subject", SAMPLE)
    assert not verdict.accepted
    assert any(problem in p for p in verdict.problems), verdict.problems


@pytest.mark.parametrize(
    "candidate",
    [
        "Five steps to your first automated journey",
        "Used by 1,200 teams: your guide",
        "{{ traits.first_name | default('there') }}, five steps to your first journey",
        "Your guide is here!",
        "CRM-ready: your guide",  # shouting counts words of four letters or more
    ],
)
def test_the_guard_lets_honest_lines_through(candidate: str) -> None:
    verdict = guard(candidate, BRIEF, "subject", SAMPLE)
    assert verdict.accepted, verdict.problems


@pytest.mark.parametrize(
    "candidate",
    [
        "Get {{ 30 }}% off your guide",
        "Get {{ '30%' }} off your guide",
        "Get {{ 10 * 3 }}% off your guide",
        "Get {{ 'x' | replace('x', '30% off') }} your guide",
        "Your guide, {{ traits.first_name | default('30% off') }}",
        "Get {{ 'aaa' | length }}0 percent off",
        "{% if true %}30% off{% endif %} your guide",
        "{{ traits.first_name | default('there') * 20 }}, your guide",
        "{{ traits.first_name | default('there') | center(200) }}",
        "{{ traits.first_name }}, your guide",
    ],
)
def test_a_placeholder_the_brief_does_not_hold_is_refused(candidate: str) -> None:
    # What an expression prints cannot be read from the line: `{{ 30 }}` is a figure, a
    # filter's argument is text, `* 20` makes the line 20 names long.
    verdict = guard(candidate, BRIEF, "subject", SAMPLE)
    assert any("placeholder not in the template" in p for p in verdict.problems), verdict.problems


def test_a_figure_split_by_a_placeholder_is_still_a_figure() -> None:
    brief = Brief(
        base="{% if traits.vip %}Your guide{% endif %}, {{ traits.first_name }}",
        facts=("Used by 3 teams", "0% of them left"),
    )
    # Rendered for a VIP: "30% off, Ada".
    verdict = guard(
        "{% if traits.vip %}3{% endif %}0% off, {{ traits.first_name }}", brief, "subject", SAMPLE
    )
    assert any("figure not in the brief: 30%" in p for p in verdict.problems), verdict.problems
    assert guard("{% if traits.vip %}Used by 3 teams{% endif %}", brief, "subject", SAMPLE).accepted


SUMMIT = Brief(base="Meet the 30 teams and 49 partners at the summit")


@pytest.mark.parametrize(
    ("candidate", "figure"),
    [
        ("30 per cent off at the summit", "30 per cent"),
        ("30 pct off at the summit", "30 pct"),
        ("30％ off at the summit", "30%"),
        ("３０% off at the summit", "30%"),
        ("$ 49 at the summit", "$ 49"),
        ("49 € at the summit", "49 €"),
        ("49 dollars at the summit", "49 dollars"),
        ("USD 49 at the summit", "USD 49"),
        ("From ₹49 at the summit", "₹49"),
        ("3x the teams at the summit", "3x"),
    ],
)
def test_a_figure_the_brief_holds_is_new_with_another_unit(candidate: str, figure: str) -> None:
    # "30 teams" in the brief does not make "30 per cent off" true, nor "49 partners" a price.
    verdict = guard(candidate, SUMMIT, "subject", SAMPLE)
    assert f"figure not in the brief: {figure}" in verdict.problems, verdict.problems


def test_a_figure_in_other_digits_or_units_of_the_brief_is_the_brief_s() -> None:
    brief = Brief(base="Save 30% at the summit", facts=("Tickets from $49",))
    for candidate in ("Save 30 per cent at the summit", "٣٠% off at the summit", "Tickets: $ 49"):
        assert guard(candidate, brief, "subject", SAMPLE).accepted, candidate


@pytest.mark.parametrize(
    ("candidate", "figure"),
    [
        ("Thirty percent off your guide", "Thirty percent"),
        ("Your guide, now at fifty per cent off", "fifty per cent"),
        ("Half price on your guide", "Half"),
        ("Twice the bookings with your guide", "Twice"),
        ("Your guide, used by two thousand teams", "two thousand"),
        ("Save twenty-five dollars on your guide", "twenty-five dollars"),
    ],
)
def test_a_figure_in_words_is_a_figure(candidate: str, figure: str) -> None:
    verdict = guard(candidate, BRIEF, "subject", SAMPLE)
    assert f"figure not in the brief: {figure}" in verdict.problems, verdict.problems


def test_a_figure_in_words_of_the_brief_is_the_brief_s() -> None:
    brief = Brief(base="Save 50% today", facts=("Five steps to a 2x faster launch",))
    for candidate in (
        "Half price today",
        "5 steps to a twice as fast launch",
        "Five steps: save fifty percent today",
        "Quick one: save 50% today",  # "one" alone is a word, not a count
    ):
        assert guard(candidate, brief, "subject", SAMPLE).accepted, candidate


@pytest.mark.parametrize(
    ("fact", "candidate"),
    [
        ("Used by 1,200 teams", "Used by 1200 teams"),
        ("Used by 1200 teams", "Used by 1,200 teams"),
        ("Tickets from $49", "Tickets from $49.00"),
        ("A 2.5x faster send", "A 2.50x faster send"),
    ],
)
def test_a_number_written_with_other_grouping_is_the_same(fact: str, candidate: str) -> None:
    assert guard(candidate, Brief(base="News", facts=(fact,)), "subject", SAMPLE).accepted


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ("Your guide\u2028is here", "more than one line"),
        ("Your guide\x85is here", "more than one line"),
        ("Your guide\x1b[2Jis here", "control character"),
        ("Your guide\x00is here", "control character"),
        ("Act  now: your guide", "spam phrase: act now"),
        ("Act\u00a0now: your guide", "spam phrase: act now"),
        ("Cli\u200bck here for five steps", "spam phrase: click here"),
        ("\U0001d5d6\U0001d5f9\U0001d5f6\U0001d5f0\U0001d5f8 here for five steps", "spam phrase"),
        ("Your guide is here\uff01\uff01", "more than one '!'"),
        ("Your guide is here\u203c", "more than one '!'"),
        ("Your \U0001d405\U0001d411\U0001d404\U0001d404 guide", "shouting: FREE"),
        ("Your F\u200bREE guide", "shouting: FREE"),
    ],
)
def test_lookalike_and_invisible_characters_do_not_hide_a_problem(
    candidate: str, problem: str
) -> None:
    verdict = guard(candidate, BRIEF, "subject", SAMPLE)
    assert any(problem in p for p in verdict.problems), verdict.problems


def test_a_placeholder_of_the_brief_may_be_rewritten_with_other_spacing() -> None:
    assert guard(
        "{{traits.first_name|default('there')}}: your guide", BRIEF, "subject", SAMPLE
    ).accepted


def test_a_word_in_capitals_in_the_brief_may_stay_so() -> None:
    brief = Brief(base="Meet ACME at the summit", facts=("GDPR-ready from day one",))
    assert guard("ACME at the summit: meet us", brief, "subject", SAMPLE).accepted
    assert guard("GDPR-ready: meet ACME at the summit", brief, "subject", SAMPLE).accepted
    assert not guard("GDPR-ready: meet ACME", Brief(base="Meet ACME"), "subject", SAMPLE).accepted


def test_a_variant_may_not_repeat_an_earlier_one() -> None:
    first = "Five steps to your first automated journey"
    assert not guard(f"  {first.upper().lower()} ", BRIEF, "subject", SAMPLE, seen=[first]).accepted


def test_message_text_is_held_to_its_channels_limit() -> None:
    brief = Brief(base="See how teams use us")
    long = "See how teams use us " * 100
    assert guard(long, brief, "text", SAMPLE, channel="whatsapp").accepted
    verdict = guard(long, brief, "text", SAMPLE, channel="sms")
    assert any("at most 1600" in p for p in verdict.problems)


def test_an_sms_text_is_held_to_its_segments() -> None:
    # 880 characters, far below 1600, but an emoji makes it UCS-2: 920 code units, 14 segments.
    brief = Brief(base="See how teams use us")
    verdict = guard("See how teams use us \U0001f600" * 40, brief, "text", SAMPLE, channel="sms")
    assert any("SMS segments" in p and "at most 10" in p for p in verdict.problems), verdict
    assert guard("See how teams use us " * 40, brief, "text", SAMPLE, channel="sms").accepted


def test_the_template_provider_is_deterministic_and_only_reuses_the_brief() -> None:
    first = template_variants(BRIEF, 3)
    assert first == template_variants(BRIEF, 3)
    assert first[0] == "Five steps to your first automated journey"
    assert "Your guide, {{ traits.first_name | default('there') }}: five steps" in first[1]
    accepted = [v for v in first if guard(v, BRIEF, "subject", SAMPLE).accepted]
    assert len(accepted) >= 3
    # A sentence that starts with a name keeps its case after a colon or a greeting.
    named = template_variants(Brief(base="Case study", facts=("Acme doubled its bookings",)), 2)
    assert "Inside: Acme doubled its bookings" in named
    assert all("acme" not in variant for variant in named)


def test_without_facts_the_template_provider_still_offers_rewordings() -> None:
    variants = template_variants(Brief(base="How Acme doubled its demo bookings"), 2)
    assert variants == [
        "{{ traits.first_name | default('there') }}, how Acme doubled its demo bookings",
        "Quick one: how Acme doubled its demo bookings",
    ]
