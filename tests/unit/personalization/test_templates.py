"""Sandboxed templates: rendering, refusals, limits, validation, emails and messages."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadloop.personalization.templates import (
    EmailTemplate,
    IssueCode,
    MessageTemplate,
    Rendered,
    RenderedEmail,
    RenderedMessage,
    TemplateIssue,
    TemplateLimits,
    render_email,
    render_message,
    render_template,
    validate_email,
    validate_message,
    validate_template,
)

CONTEXT: dict[str, Any] = {
    "profile": {
        "first_name": "ada",
        "traits": {"plan": "pro", "items": 3},
        "email": "ada@example.com",
    },
    "cart": [{"name": "Book", "price": 12.5}, {"name": "Pen", "price": 1.25}],
    "many": list(range(1_000)),
}


def _issue(source: str, context: dict[str, Any] | None = None, **kw: Any) -> TemplateIssue:
    result = render_template(source, CONTEXT if context is None else context, **kw)
    assert isinstance(result, TemplateIssue), result
    return result


def _text(source: str, **kw: Any) -> str:
    result = render_template(source, CONTEXT, **kw)
    assert isinstance(result, Rendered), result
    return result.text


def test_renders_ordinary_copy() -> None:
    source = (
        "Hi {{ profile.first_name|title }} ({{ profile.traits.plan|upper }})\n"
        "{% for item in cart %}{{ loop.index }}. {{ item.name }} {{ '%.2f'|format(item.price) }}"
        "{{ loop.cycle(',', '') }}{% endfor %} total {{ cart|sum(attribute='price') }}"
        " {{ profile.traits.items }} {{ range(3)|join('-') }}"
    )
    assert _text(source) == "Hi Ada (PRO)\n1. Book 12.50,2. Pen 1.25 total 13.75 3 0-1-2"


def test_a_null_trait_takes_the_default() -> None:
    source = "Hi {{ traits.first_name | default('there') }}{{ traits.last|d('!') }}"
    context = {"traits": {"first_name": None, "last": None}}
    assert render_template(source, context) == Rendered("Hi there!")
    assert render_template(source, {"traits": {"first_name": "", "last": 0}}) == Rendered("Hi 0")


@pytest.mark.parametrize("autoescape", [False, True])
def test_a_null_trait_prints_nothing(autoescape: bool) -> None:
    source = (
        "Hi {{ traits.first_name }}{{ none }}{% set x %}[{{ traits.first_name }}]{% endset %}{{ x }}"
        " {{ traits.first_name is none }} {{ traits.first_name == none }} {{ traits.plan }}"
        # `~` and `join` turned a null into "None" too: 'Hi ' ~ traits.first_name gave "Hi None".
        "|{{ 'Hi ' ~ traits.first_name ~ '!' }}|{{ [traits.first_name, 'L'] | join(' ') }}"
    )
    context = {"traits": {"first_name": None, "plan": 0}}
    result = render_template(source, context, autoescape=autoescape)
    assert result == Rendered("Hi [] True True 0|Hi !| L")


def test_html_parts_autoescape() -> None:
    result = render_template("<b>{{ name }}</b>", {"name": "<script>"}, autoescape=True)
    assert result == Rendered("<b>&lt;script&gt;</b>")
    assert render_template("{{ name }}", {"name": "<x>"}) == Rendered("<x>")


INJECTIONS = [
    ("{{ ''.__class__ }}", IssueCode.UNSAFE),
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", IssueCode.UNSAFE),
    ("{{ cart.__class__.__init__.__globals__ }}", IssueCode.UNSAFE),
    ("{{ profile['__class__'] }}", IssueCode.UNSAFE),
    ("{{ '{0.__class__}'.format_map(profile) }}", IssueCode.UNSAFE),
    ("{{ ''|attr('__class__') }}", IssueCode.UNSAFE),
    ("{{ 'a'.ljust(10**9) }}", IssueCode.UNSAFE),
    ("{{ '{:>999999999}'.format(1) }}", IssueCode.UNSAFE),
    ("{{ cart.append(1) }}", IssueCode.UNSAFE),
    ("{{ '%0999999999d' % 1 }}", IssueCode.UNSAFE),
    ("{% for i in range(10**9) %}x{% endfor %}", IssueCode.LIMIT),
    ("{{ range(10**30)|list }}", IssueCode.LIMIT),
    ("{{ 'a' * 10**9 }}", IssueCode.LIMIT),
    ("{{ 10**9 * 'a' }}", IssueCode.LIMIT),
    ("{{ [0] * 10**9 }}", IssueCode.LIMIT),
    ("{{ 9**9**9 }}", IssueCode.LIMIT),
    ("{{ '%0999999999d'|format(1) }}", IssueCode.LIMIT),
    ("{{ 'x'|center(10**9) }}", IssueCode.LIMIT),
    ("{{ 'x'|indent(10**9, true) }}", IssueCode.LIMIT),
    ("{{ 'abc'|replace('', 'x' * 90000) }}", IssueCode.LIMIT),
    ("{{ many|join('x' * 90000) }}", IssueCode.LIMIT),
    ("{{ many|batch(10**9)|list }}", IssueCode.LIMIT),
    ("{{ many|slice(10**9)|list }}", IssueCode.LIMIT),
    ("{{ cart|tojson(10**9) }}", IssueCode.LIMIT),
    ("{{ 'a b'|wordwrap(1, wrapstring='x' * 10**5) }}", IssueCode.LIMIT),
    (
        "{% for a in many %}{% for b in many %}{% for c in many %}{% endfor %}"
        "{% endfor %}{% endfor %}",
        IssueCode.LIMIT,
    ),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        IssueCode.LIMIT,
    ),
    (
        "{% set ns = namespace(s='ab') %}{% for i in range(60) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        IssueCode.LIMIT,
    ),
    (
        "{% set ns = namespace(n=2) %}{% for i in range(60) %}"
        "{% set ns.n = ns.n * ns.n %}{% endfor %}",
        IssueCode.LIMIT,
    ),
    (
        "{% macro m() %}{% for i in range(900) %}{{ 'y' * 900 }}{% endfor %}{% endmacro %}"
        "{{ m()|length }}",
        IssueCode.LIMIT,
    ),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", IssueCode.LIMIT),
    (  # each `loop(x)` of a recursive loop iterates its items: they count like any loop's
        "{% for x in [many] * 10000 recursive %}{% if x is iterable %}{{ loop(x) }}{% endif %}"
        "{% endfor %}",
        IssueCode.LIMIT,
    ),
    ("{% for i in many %}{{ 'z' * 200 }}{% endfor %}", IssueCode.LIMIT),
    ("{{ lipsum(10**6) }}", IssueCode.UNDEFINED),
    ("{{ cart|random }}", IssueCode.SYNTAX),
    ("{% include 'other' %}", IssueCode.RENDER),
]


@pytest.mark.parametrize(("source", "code"), INJECTIONS, ids=[s for s, _ in INJECTIONS])
def test_injections_and_bombs_are_refused_quickly(source: str, code: IssueCode) -> None:
    started = time.perf_counter()  # a sanity bound on a pathological case, not a benchmark
    issue = _issue(source)
    assert time.perf_counter() - started < 2.0
    assert issue.code is code, issue
    assert issue.message


SHARED = "{% set a = [1] %}" + "{% set a = [a, a] %}" * 20


@pytest.mark.parametrize(
    "source",
    [
        "{{ (['x' * 600] * 2)|length }}",  # two items, 1,200 characters once printed
        SHARED + "{{ a|length }}",  # 2**20 items once printed
        SHARED + SHARED.replace("a", "b") + "{{ a == b }}",  # 2**20 comparisons
        "{% set a = {'k': 1} %}" + "{% set a = {'l': a, 'r': a} %}" * 20 + "{{ a|length }}",
        "{% set a = [1] %}" + "{% set a = dict(l=a, r=a) %}" * 20 + "{{ a|length }}",
        "{% set n = namespace(v='x' * 600) %}{% set n.w = n.v %}{{ n.w|length }}",
    ],
)
def test_a_value_held_many_times_is_bounded_as_printed(source: str) -> None:
    issue = _issue(source, limits=TemplateLimits(max_output_chars=1_000))
    assert issue.code is IssueCode.LIMIT, issue


def test_nested_values_within_the_limits_render() -> None:
    source = (
        "{% set ns = namespace(rows=[]) %}{% for item in cart %}"
        "{% set ns.rows = ns.rows + [(item.name, {'p': item.price})] %}{% endfor %}"
        "{% for name, row in ns.rows %}{{ name }}={{ row.p }} {% endfor %}{{ profile|length }}"
    )
    assert _text(source) == "Book=12.5 Pen=1.25 3"


def test_recursive_loops_still_render() -> None:
    tree = "{% for x in [[1, 2], [3]] recursive %}{% if x is iterable %}({{ loop(x) }}){% else %}"
    assert _text(tree + "{{ x }}/{{ loop.length }}{% endif %}{% endfor %}") == "(1/22/2)(3/1)"


def test_errors_carry_the_template_line() -> None:
    issue = _issue("line one\n{{ profile.first_name }}\n{{ nope }}")
    assert (issue.code, issue.line) == (IssueCode.UNDEFINED, 3)
    syntax = _issue("ok\n{% if %}")
    assert (syntax.code, syntax.line) == (IssueCode.SYNTAX, 2)


def test_source_and_output_limits() -> None:
    assert _issue("x" * 11, limits=TemplateLimits(max_source_chars=10)).code is IssueCode.TOO_LARGE
    limits = TemplateLimits(max_output_chars=50)
    assert _issue("{{ 'a' * 51 }}", limits=limits).code is IssueCode.LIMIT
    assert _issue("{{ many }}", limits=limits).code is IssueCode.LIMIT


def test_budget_is_per_render() -> None:
    source = "{% for i in range(900) %}{% endfor %}"
    for _ in range(20):
        assert render_template(source, {}) == Rendered("")


@given(st.text(max_size=200))
def test_arbitrary_sources_never_raise(source: str) -> None:
    result = render_template(source, CONTEXT)
    assert isinstance(result, Rendered | TemplateIssue)


# --- validation ---------------------------------------------------------------------------


def test_validation_passes_good_templates() -> None:
    assert validate_template("Hi {{ profile.first_name }} {{ profile.traits.plan }}", CONTEXT) == []
    loop = "{% for item in cart %}{{ item.name }}{% endfor %}{% set x = 1 %}{{ x }}"
    assert validate_template(loop, CONTEXT) == []


def test_validation_finds_unknown_variables_and_fields() -> None:
    issues = validate_template(
        "{{ profil.first_name }}\n{{ profile.traits.plna }} {{ profile.traits.plna.x }}"
        " {{ profile['emial'] }}",
        CONTEXT,
    )
    found = {(i.code, i.message, i.line) for i in issues}
    assert found == {
        (IssueCode.UNKNOWN_VARIABLE, "unknown variable 'profil'", 1),
        (IssueCode.UNKNOWN_FIELD, "unknown field 'profile.traits.plna'", 2),
        (IssueCode.UNKNOWN_FIELD, "unknown field 'profile.emial'", 2),
    }


def test_validation_flags_unsafe_and_unsupported_statically() -> None:
    issues = validate_template("{{ ''.__class__ }}\n{% extends 'base' %}", CONTEXT)
    assert {(i.code, i.line) for i in issues} == {
        (IssueCode.UNSAFE, 1),
        (IssueCode.UNSUPPORTED, 2),
    }


def test_validation_renders_once_to_catch_limits() -> None:
    issues = validate_template("{% for i in range(10**9) %}{% endfor %}", CONTEXT)
    assert [i.code for i in issues] == [IssueCode.LIMIT]
    assert validate_template("{% if %}", CONTEXT)[0].code is IssueCode.SYNTAX


# --- emails and messages ------------------------------------------------------------------

EMAIL = EmailTemplate(
    subject="Welcome,\n  {{ profile.first_name|title }}!",
    preheader="Your {{ profile.traits.plan }} plan",
    html="<p>Hi {{ profile.first_name }} & {{ tag }}</p>",
    text="Hi {{ profile.first_name }} & {{ tag }}",
)


def test_render_email() -> None:
    rendered = render_email(EMAIL, {**CONTEXT, "tag": "<b>"})
    assert rendered == RenderedEmail(
        subject="Welcome, Ada!",
        preheader="Your pro plan",
        html="<p>Hi ada & &lt;b&gt;</p>",
        text="Hi ada & <b>",
    )


def test_email_issues_name_the_part() -> None:
    issues = validate_email(EMAIL, CONTEXT)
    assert [(i.code, i.part) for i in issues] == [
        (IssueCode.UNKNOWN_VARIABLE, "html"),
        (IssueCode.UNKNOWN_VARIABLE, "text"),
    ]
    empty = EmailTemplate(subject="{{ '' }}", html="x", text="x")
    result = render_email(empty, CONTEXT)
    assert isinstance(result, TemplateIssue)
    assert (result.code, result.part) == (IssueCode.EMPTY, "subject")
    long = EmailTemplate(subject="{{ 'x' * 300 }}", html="x", text="x")
    assert validate_email(long, CONTEXT)[0].code is IssueCode.LIMIT


def test_render_messages_per_channel() -> None:
    sms = render_message(MessageTemplate("sms", "Hi {{ profile.first_name }} €"), CONTEXT)
    assert isinstance(sms, RenderedMessage)
    assert sms.sms is not None and (sms.sms.encoding, sms.sms.units) == ("gsm7", 9)
    whatsapp = render_message(MessageTemplate("whatsapp", "{{ 'x' * 4096 }}"), CONTEXT)
    assert isinstance(whatsapp, RenderedMessage) and whatsapp.sms is None


@pytest.mark.parametrize(
    ("channel", "body", "code"),
    [
        ("sms", "{{ 'ж' * 700 }}", IssueCode.LIMIT),  # 11 UCS-2 segments
        ("whatsapp", "{{ 'x' * 4097 }}", IssueCode.LIMIT),
        ("instagram", "{{ 'x' * 1001 }}", IssueCode.LIMIT),
        ("sms", "{{ '' }}  ", IssueCode.EMPTY),
        ("fax", "hello", IssueCode.UNKNOWN_CHANNEL),
        ("sms", "{{ nope }}", IssueCode.UNKNOWN_VARIABLE),
    ],
)
def test_message_limits(channel: str, body: str, code: IssueCode) -> None:
    issues = validate_message(MessageTemplate(channel, body), CONTEXT)
    assert [i.code for i in issues] == [code]
