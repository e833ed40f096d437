"""Copy variants: alternatives to a template's subject line or message text, and the guardrails
every candidate passes before anyone may send it, whoever wrote it.

A generated line is a claim made in the sender's name. Small language models invent discounts
and figures (research/ml-data.md: asked for "20 % off", one wrote "30% Off"), so the guard
refuses any figure the brief does not contain, shouting, spam phrases, lines too long for an
inbox, and anything the template sandbox would refuse. The template provider writes variants
from the brief's own sentences only, so it is deterministic and can claim nothing new.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import TemplateSyntaxError

from leadloop.personalization.figures import NUMBER_WORDS, figures, plain
from leadloop.personalization.sandbox import ENVIRONMENTS
from leadloop.personalization.sms import count_segments
from leadloop.personalization.templates import CHANNEL_LIMITS, IssueCode, validate_template
from leadloop.playbook.nodes import env_placeholders

Part = Literal["subject", "text"]

SUBJECT_CHARS = 78
"""A rendered subject longer than this is cut in most inbox lists (and RFC 5322 keeps header
lines to 78), so the words that were to win the open are not read."""

SPAM_PHRASES = (
    "act now",
    "100% free",
    "risk-free",
    "risk free",
    "no obligation",
    "click here",
    "winner",
    "you have been selected",
    "guaranteed",
    "cash bonus",
    "$$$",
    "limited time only",
    "once in a lifetime",
    "urgent",
)
"""Phrases spam filters and readers both hold against a sender."""

PLACEHOLDER_CHARS = 12
"""What a `{{ … }}` is counted as when measuring a line: a first name or a company name."""

_WORD = re.compile(r"[^\W\d_]{4,}")
_ENV = re.compile(r"\$\{[^}]*\}")
_SPACES = re.compile(r"\s+")
FIRST_NAME = "{{ traits.first_name | default('there') }}"


@dataclass(frozen=True, slots=True)
class Brief:
    """What a variant may say: the template's own text and the facts given with it."""

    base: str
    facts: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return " ".join((self.base, *self.facts))


@dataclass(frozen=True, slots=True)
class Verdict:
    text: str
    problems: tuple[str, ...]

    @property
    def accepted(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Lexed:
    """A line as the reader gets it: its text between the template's tags, and the tags."""

    glued: str
    """The text with every tag printing nothing: `3{% if vip %}{% endif %}0%` is "30%"."""
    spaced: str
    """The text with a space for every tag: words a tag separates stay apart."""
    filled: str
    """The text with each `{{ … }}` as `PLACEHOLDER_CHARS` characters: its length to measure."""
    tags: dict[tuple[str, ...], str]
    """Each `{{ … }}` and `{% … %}` by its tokens (spacing and `-` aside), as written."""


_BEGIN = {"variable_begin": "variable_end", "block_begin": "block_end"}


def _lex(text: str) -> _Lexed | None:
    """None: `text` is not a template (the sandbox check says why)."""
    glued: list[str] = []
    spaced: list[str] = []
    filled: list[str] = []
    tags: dict[tuple[str, ...], str] = {}
    tag: list[tuple[str, str]] = []
    try:
        for _, kind, value in ENVIRONMENTS[False].lexer.tokeniter(text, None):
            if tag:
                tag.append((kind, value))
                if kind == _BEGIN[tag[0][0]]:
                    key = tuple(v for k, v in tag[1:-1] if k != "whitespace")
                    tags[(tag[0][0], *key)] = "".join(v for _, v in tag).strip()
                    filled.append("x" * PLACEHOLDER_CHARS if kind == "variable_end" else "")
                    spaced.append(" ")
                    tag = []
            elif kind in _BEGIN:
                tag = [(kind, value)]
            elif kind == "data":
                glued.append(value)
                spaced.append(value)
                filled.append(value)
    except TemplateSyntaxError:
        return None
    if tag:  # a tag left open
        return None
    return _Lexed("".join(glued), "".join(spaced), "".join(filled), tags)


def _tags(texts: Iterable[str]) -> set[tuple[str, ...]]:
    return {key for text in texts if (lexed := _lex(text)) for key in lexed.tags}


_FIRST_NAME_TAGS = _tags([FIRST_NAME])


def _key(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


def guard(
    candidate: str,
    brief: Brief,
    part: Part,
    sample: Mapping[str, Any],
    channel: str = "email",
    seen: Iterable[str] = (),
) -> Verdict:
    """Every reason `candidate` may not be sent as a variant of `brief.base`; none: it may."""
    problems: list[str] = []
    text = candidate.strip()
    if not text:
        return Verdict(candidate, ("empty",))
    lexed = _lex(text)
    readable: tuple[str, ...] = (text,)  # not a template: the sandbox check says why
    # What an expression prints cannot be read from the line (`{{ 30 }}`, a filter's argument,
    # `* 20`): a variant uses the template's own tags, and the greeting's.
    if lexed is not None:
        allowed = _tags([brief.base, *brief.facts]) | _FIRST_NAME_TAGS
        new_tags = sorted(shown for key, shown in lexed.tags.items() if key not in allowed)
        if new_tags:
            problems.append(f"placeholder not in the template: {', '.join(new_tags)}")
        readable = (lexed.glued, lexed.spaced)
    if len(text.splitlines()) > 1:  # U+2028, U+0085... break a line as "\n" does
        problems.append("more than one line")
    if any(unicodedata.category(c) == "Cc" for c in "".join(text.splitlines())):
        problems.append("a control character")
    # Read as a person reads it: `𝐅𝐑𝐄𝐄`, `！！` or a zero-width space inside a word hide
    # nothing from them.
    readable = tuple(_SPACES.sub(" ", plain(t)) for t in readable)
    # Substituted when the pasted playbook loads: a new one would send that variable's value
    # (a key, a token) to every lead.
    new_env = sorted(env_placeholders(text) - env_placeholders(brief.text))
    if new_env:
        problems.append(f"environment placeholder not in the template: {', '.join(new_env)}")
    said = figures(" ".join(_readable(t) for t in (brief.base, *brief.facts)))
    stated = {key: shown for text in readable for key, shown in figures(text).items()}
    invented = sorted({shown for key, shown in stated.items() if key not in said})
    if invented:
        problems.append(f"figure not in the brief: {', '.join(invented)}")
    shouted = sorted(
        {w for w in _WORD.findall(_ENV.sub(" ", readable[-1])) if w.isupper()}
        - set(_WORD.findall(plain(brief.text)))
    )
    if shouted:
        problems.append(f"shouting: {', '.join(shouted)}")
    if max(t.count("!") for t in readable) > 1:
        problems.append("more than one '!'")
    folded = [t.casefold() for t in readable]
    spam = [phrase for phrase in SPAM_PHRASES if any(phrase in t for t in folded)]
    if spam:
        problems.append(f"spam phrase: {', '.join(spam)}")
    issues = [
        issue
        for issue in validate_template(text, sample, part=part)
        if issue.code not in (IssueCode.RENDER, IssueCode.UNDEFINED)
    ]
    problems.extend(f"template: {issue.message}" for issue in issues)
    problems.extend(_length(lexed.filled if lexed else text, part, channel))
    if _key(text) == _key(brief.base) or _key(text) in {_key(s) for s in seen}:
        problems.append("the same as the template or an earlier variant")
    return Verdict(text, tuple(problems))


def _length(filled: str, part: Part, channel: str) -> list[str]:
    problems = []
    limit = SUBJECT_CHARS if part == "subject" else CHANNEL_LIMITS[channel].max_chars
    if len(filled) > limit:
        problems.append(f"{len(filled)} characters with its placeholders filled (at most {limit})")
    most = CHANNEL_LIMITS[channel].max_segments if part == "text" else None
    # An SMS is held to segments too: one emoji makes it UCS-2, 67 characters a segment.
    if most is not None and (sms := count_segments(filled)).segments > most:
        problems.append(
            f"{sms.segments} SMS segments ({sms.encoding}) with its placeholders filled "
            f"(at most {most})"
        )
    return problems


def _readable(text: str) -> str:
    lexed = _lex(text)
    return text if lexed is None else lexed.spaced


_PLAIN_STARTS = frozenset(
    [
        "a",
        "an",
        "the",
        "your",
        "our",
        "this",
        "these",
        "how",
        "why",
        "what",
        "when",
        "where",
        "here",
        "see",
        "read",
        "get",
        "meet",
        "join",
        "learn",
        "discover",
        "start",
        "try",
        "inside",
        *NUMBER_WORDS,
    ]
)
"""First words that are lowercased after a colon or a name; any other (Acme, GDPR, iPhone)
may be a name, and keeps its case."""


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    return text[:1].lower() + text[1:] if first.casefold() in _PLAIN_STARTS else text


def _sentence(text: str) -> str:
    return _SPACES.sub(" ", text).strip().rstrip(".!")


def template_variants(brief: Brief, count: int) -> list[str]:
    """Candidates made only of the brief's own sentences, in a fixed order: the same brief
    gives the same list on every run, and no word of a claim is new."""
    out: list[str] = []
    base = _sentence(brief.base)
    named = "first_name" in brief.base
    for raw in brief.facts:
        fact = _sentence(raw)
        if not fact:
            continue
        candidates = [
            fact[:1].upper() + fact[1:],
            f"{base}: {_lower_first(fact)}",
            f"Inside: {_lower_first(fact)}",
        ]
        if not named:
            candidates.insert(1, f"{FIRST_NAME}, {_lower_first(fact)}")
        out.extend(candidates)
    if not named:
        out.append(f"{FIRST_NAME}, {_lower_first(base)}")
    out.append(f"Quick one: {_lower_first(base)}")
    unique: list[str] = []
    for candidate in out:
        if _key(candidate) not in {_key(u) for u in unique}:
            unique.append(candidate)
    return unique[: max(count, 0) * 3]
