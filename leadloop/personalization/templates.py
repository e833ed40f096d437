"""Message templates: Jinja2 in the immutable sandbox, with size and work limits.

Templates are written by users of the engine, so they are untrusted code. Three layers:

1. Jinja2's `ImmutableSandboxedEnvironment` refuses `_`-prefixed attributes (`''.__class__`) and
   mutation of lists and dicts. On top of it, attributes that are callables are refused too (no
   `'x'.ljust(10**9)`, no `'{:>999999999}'.format`): templates use filters, not methods.
2. Sizes are checked where values grow: the source, every `+ * ~`, every filter result, list and
   dict literals, `{% set ns.attr %}`, buffered blocks (macros, `{% set %}...{% endset %}`), and
   the streamed output; a list counts as printed, nested lists and their texts included. Amplifying filters
   (`center`, `indent`, `join`, `replace`, `format`, `batch`...) check their arguments before
   allocating. Integer arithmetic is kept under `MAX_INT_BITS`.
3. Work is bounded by an operation budget instead of a wall-clock timeout: every loop iteration,
   call, filter, operator and attribute lookup costs one unit and `range()` costs its length. A
   timeout would need a clock read, a thread or a signal, and would make the same render pass or
   fail depending on load; the budget is deterministic, so a replay renders the same way.
   Loop iterations are counted by compiling each `{% for %}` iterable through `_iterate` (a
   custom code generator, `Environment.code_generator_class`).

Expected failures (syntax, unknown variable, refused operation, limit) come back as a
`TemplateIssue` value; nothing here raises for a bad template.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError

from leadloop.personalization.sandbox import (
    ACTIVE_BUDGET,
    DEFAULT_LIMITS,
    ENVIRONMENTS,
    GLOBAL_NAMES,
    Budget,
    LimitExceeded,
    TemplateLimits,
)
from leadloop.personalization.sms import SmsCount, count_segments


class IssueCode(StrEnum):
    TOO_LARGE = "too_large"
    SYNTAX = "syntax"
    UNSUPPORTED = "unsupported"
    UNKNOWN_VARIABLE = "unknown_variable"
    UNKNOWN_FIELD = "unknown_field"
    UNDEFINED = "undefined"
    UNSAFE = "unsafe"
    LIMIT = "limit"
    RENDER = "render"
    EMPTY = "empty"
    UNKNOWN_CHANNEL = "unknown_channel"


@dataclass(frozen=True, slots=True)
class TemplateIssue:
    code: IssueCode
    message: str
    line: int | None = None
    part: str | None = None
    """Which part of an email or message ("subject", "html"...), when there are several."""


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str


# --- rendering ----------------------------------------------------------------------------


def _template_line(exc: BaseException) -> int | None:
    """The template line of an error: Jinja rewrites tracebacks so template frames carry it."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line if isinstance(line, int) else None


def _issue_for(exc: Exception, part: str | None) -> TemplateIssue:
    line = _template_line(exc)
    if isinstance(exc, LimitExceeded):
        return TemplateIssue(IssueCode.LIMIT, str(exc), line, part)
    if isinstance(exc, SecurityError):
        return TemplateIssue(IssueCode.UNSAFE, f"refused: {exc}", line, part)
    if isinstance(exc, UndefinedError):
        return TemplateIssue(IssueCode.UNDEFINED, str(exc), line, part)
    if isinstance(exc, TemplateSyntaxError):
        return TemplateIssue(IssueCode.SYNTAX, exc.message or str(exc), exc.lineno, part)
    if isinstance(exc, RecursionError):
        return TemplateIssue(IssueCode.LIMIT, "macros call each other too deeply", line, part)
    return TemplateIssue(IssueCode.RENDER, f"{type(exc).__name__}: {exc}", line, part)


@functools.lru_cache(maxsize=512)
def _compile(source: str, autoescape: bool) -> Any:
    # Compiled templates are immutable and shared; compiling is the costly step.
    return ENVIRONMENTS[autoescape].from_string(source)


def render_template(
    source: str,
    context: Mapping[str, Any],
    *,
    autoescape: bool = False,
    limits: TemplateLimits = DEFAULT_LIMITS,
    part: str | None = None,
) -> Rendered | TemplateIssue:
    """Render `source` with `context`; `autoescape` for HTML parts."""
    if len(source) > limits.max_source_chars:
        return TemplateIssue(
            IssueCode.TOO_LARGE, f"template over {limits.max_source_chars} characters", None, part
        )
    token = ACTIVE_BUDGET.set(Budget(limits))
    try:
        template = _compile(source, autoescape)
        chunks: list[str] = []
        total = 0
        for chunk in template.generate(dict(context)):
            total += len(chunk)
            if total > limits.max_output_chars:
                return TemplateIssue(
                    IssueCode.LIMIT, f"output over {limits.max_output_chars} characters", None, part
                )
            chunks.append(chunk)
        return Rendered("".join(chunks))
    except Exception as exc:  # a user's template failing is an outcome, not a crash
        return _issue_for(exc, part)
    finally:
        ACTIVE_BUDGET.reset(token)


# --- validation ---------------------------------------------------------------------------


def _path(node: nodes.Node) -> tuple[str, list[str | int | None]] | None:
    """`profile.traits["plan"]` as ("profile", ["traits", "plan"]); None if not rooted at a name.
    A non-constant subscript is None in the path: the check stops there."""
    keys: list[str | int | None] = []
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        else:
            arg = node.arg
            value = arg.value if isinstance(arg, nodes.Const) else None
            keys.append(value if isinstance(value, str | int) else None)
        node = node.node
    if not isinstance(node, nodes.Name):
        return None
    return node.name, keys[::-1]


def _missing_field(sample: Any, root: str, keys: list[str | int | None]) -> str | None:
    """The first prefix of the path that the sample context shows does not exist."""
    value, shown = sample, root
    for key in keys:
        if key is None:
            return None
        shown += f".{key}" if isinstance(key, str) else f"[{key}]"
        if isinstance(value, Mapping):
            if key not in value:
                return shown
            value = value[key]
        elif isinstance(value, list | tuple) and isinstance(key, int):
            if not -len(value) <= key < len(value):
                return None  # lists vary in length between profiles: not a static error
            value = value[key]
        else:
            return None  # scalars and objects: shape unknown, leave it to the trial render
    return None


def _static_issues(ast: nodes.Template, available: Mapping[str, Any]) -> list[TemplateIssue]:
    issues: list[TemplateIssue] = []
    for stmt in ast.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        issues.append(
            TemplateIssue(
                IssueCode.UNSUPPORTED, "templates cannot extend or include others", stmt.lineno
            )
        )
    lookups: list[nodes.Getattr | nodes.Getitem] = [
        n
        for n in ast.find_all((nodes.Getattr, nodes.Getitem))
        if isinstance(n, nodes.Getattr | nodes.Getitem)
    ]
    for lookup in lookups:
        key = (
            lookup.attr if isinstance(lookup, nodes.Getattr) else getattr(lookup.arg, "value", None)
        )
        if isinstance(key, str) and key.startswith("_"):
            issues.append(
                TemplateIssue(IssueCode.UNSAFE, f"refused: access to {key!r}", lookup.lineno)
            )
    free = meta.find_undeclared_variables(ast) - GLOBAL_NAMES
    names = list(ast.find_all(nodes.Name))
    for name in sorted(free - set(available)):
        line = next((n.lineno for n in names if n.name == name), None)
        issues.append(TemplateIssue(IssueCode.UNKNOWN_VARIABLE, f"unknown variable {name!r}", line))
    assigned = {n.name for n in names if n.ctx in ("store", "param")}
    reported: set[str] = set()
    for lookup in lookups:
        found = _path(lookup)
        if (
            found is None
            or found[0] not in free
            or found[0] in assigned
            or found[0] not in available
        ):
            continue
        missing = _missing_field(available[found[0]], *found)
        if missing is not None and not any(missing.startswith(r) for r in reported):
            reported.add(missing)
            issues.append(
                TemplateIssue(IssueCode.UNKNOWN_FIELD, f"unknown field {missing!r}", lookup.lineno)
            )
    return issues


def validate_template(
    source: str,
    available_variables: Mapping[str, Any],
    *,
    autoescape: bool = False,
    limits: TemplateLimits = DEFAULT_LIMITS,
    part: str | None = None,
) -> list[TemplateIssue]:
    """Everything wrong with a template, found before any send.

    `available_variables` is a sample context (nested mappings): top-level names must exist in it,
    and attribute paths (`profile.traits.plan`) are checked against it as far as its mappings go.
    When those static checks pass, the template is rendered once with the sample, which catches
    refused operations and limits with the line they occur on.
    """
    if len(source) > limits.max_source_chars:
        return [
            TemplateIssue(
                IssueCode.TOO_LARGE,
                f"template over {limits.max_source_chars} characters",
                None,
                part,
            )
        ]
    try:
        ast = ENVIRONMENTS[autoescape].parse(source)
    except TemplateSyntaxError as exc:
        return [_issue_for(exc, part)]
    issues = [
        TemplateIssue(i.code, i.message, i.line, part)
        for i in _static_issues(ast, available_variables)
    ]
    if issues:
        return issues
    result = render_template(
        source, available_variables, autoescape=autoescape, limits=limits, part=part
    )
    return [result] if isinstance(result, TemplateIssue) else []


# --- emails and messages ------------------------------------------------------------------

MAX_SUBJECT_CHARS = 255
MAX_PREHEADER_CHARS = 500
# Whitespace and control characters (C0, DEL, C1: NUL, ESC, U+0085...; `\s` has U+2028/U+2029).
_WHITESPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")


@dataclass(frozen=True, slots=True)
class EmailTemplate:
    subject: str
    html: str
    text: str
    preheader: str = ""
    """Plain text shown after the subject in inboxes; the email channel escapes it into the HTML."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


def _email_parts(template: EmailTemplate) -> list[tuple[str, str, bool]]:
    return [
        ("subject", template.subject, False),
        ("preheader", template.preheader, False),
        ("html", template.html, True),
        ("text", template.text, False),
    ]


def _one_line(part: str, text: str, limit: int) -> str | TemplateIssue:
    # A header must not carry CR/LF (header injection) nor other control characters; template
    # whitespace and controls fold to one space, so words they separated stay apart.
    line = _WHITESPACE.sub(" ", text).strip()
    if len(line) > limit:
        return TemplateIssue(IssueCode.LIMIT, f"{part} over {limit} characters", None, part)
    return line


def render_email(
    template: EmailTemplate, context: Mapping[str, Any], limits: TemplateLimits = DEFAULT_LIMITS
) -> RenderedEmail | TemplateIssue:
    out: dict[str, str] = {}
    for part, source, autoescape in _email_parts(template):
        result = render_template(source, context, autoescape=autoescape, limits=limits, part=part)
        if isinstance(result, TemplateIssue):
            return result
        out[part] = result.text
    subject = _one_line("subject", out["subject"], MAX_SUBJECT_CHARS)
    preheader = _one_line("preheader", out["preheader"], MAX_PREHEADER_CHARS)
    if isinstance(subject, TemplateIssue):
        return subject
    if isinstance(preheader, TemplateIssue):
        return preheader
    if not subject:
        return TemplateIssue(IssueCode.EMPTY, "the subject renders empty", None, "subject")
    return RenderedEmail(subject, preheader, out["html"], out["text"])


def validate_email(
    template: EmailTemplate,
    available_variables: Mapping[str, Any],
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> list[TemplateIssue]:
    issues: list[TemplateIssue] = []
    for part, source, autoescape in _email_parts(template):
        issues += validate_template(
            source, available_variables, autoescape=autoescape, limits=limits, part=part
        )
    if not issues:
        rendered = render_email(template, available_variables, limits)
        if isinstance(rendered, TemplateIssue):
            issues.append(rendered)
    return issues


@dataclass(frozen=True, slots=True)
class ChannelLimit:
    max_chars: int
    max_segments: int | None = None


CHANNEL_LIMITS: Mapping[str, ChannelLimit] = {
    # 1600 characters / 10 segments: what SMS gateways (Twilio among them) accept in one request.
    "sms": ChannelLimit(1600, max_segments=10),
    "whatsapp": ChannelLimit(4096),  # Cloud API text message body
    "instagram": ChannelLimit(1000),  # Messenger Platform text for Instagram
}


@dataclass(frozen=True, slots=True)
class MessageTemplate:
    channel: str
    body: str


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    channel: str
    text: str
    sms: SmsCount | None = None


def render_message(
    template: MessageTemplate, context: Mapping[str, Any], limits: TemplateLimits = DEFAULT_LIMITS
) -> RenderedMessage | TemplateIssue:
    channel = CHANNEL_LIMITS.get(template.channel)
    if channel is None:
        return TemplateIssue(
            IssueCode.UNKNOWN_CHANNEL, f"no channel {template.channel!r}", None, "body"
        )
    result = render_template(template.body, context, limits=limits, part="body")
    if isinstance(result, TemplateIssue):
        return result
    text = result.text.strip()
    if not text:
        return TemplateIssue(IssueCode.EMPTY, "the message renders empty", None, "body")
    if len(text) > channel.max_chars:
        return TemplateIssue(
            IssueCode.LIMIT,
            f"{template.channel} messages hold {channel.max_chars} characters, this has {len(text)}",
            None,
            "body",
        )
    sms = count_segments(text) if template.channel == "sms" else None
    if sms is not None and channel.max_segments is not None and sms.segments > channel.max_segments:
        return TemplateIssue(
            IssueCode.LIMIT,
            f"SMS of {sms.segments} segments ({sms.encoding}); at most {channel.max_segments}",
            None,
            "body",
        )
    return RenderedMessage(template.channel, text, sms)


def validate_message(
    template: MessageTemplate,
    available_variables: Mapping[str, Any],
    limits: TemplateLimits = DEFAULT_LIMITS,
) -> list[TemplateIssue]:
    issues = validate_template(template.body, available_variables, limits=limits, part="body")
    if not issues:
        rendered = render_message(template, available_variables, limits)
        if isinstance(rendered, TemplateIssue):
            issues.append(rendered)
    return issues
