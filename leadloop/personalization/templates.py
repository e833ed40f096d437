"""Message templates: Jinja2 in the immutable sandbox, with size and work limits.

Templates are written by users of the engine, so they are untrusted code. Three layers:

1. Jinja2's `ImmutableSandboxedEnvironment` refuses `_`-prefixed attributes (`''.__class__`) and
   mutation of lists and dicts. On top of it, attributes that are callables are refused too (no
   `'x'.ljust(10**9)`, no `'{:>999999999}'.format`): templates use filters, not methods.
2. Sizes are checked where values grow: the source, every `+ * ~`, every filter result, buffered
   blocks (macros, `{% set %}...{% endset %}`), and the streamed output. Amplifying filters
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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from jinja2 import StrictUndefined, TemplateSyntaxError, filters, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_eval_context

from leadloop.personalization.sms import SmsCount, count_segments

MAX_INT_BITS = 256
"""Integers in templates are prices, counts and ids: far below this. Bigger means abuse."""


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    max_source_chars: int = 32_768
    max_output_chars: int = 100_000
    max_items: int = 10_000
    """Longest list a template may build (`*`, `+`, `batch`, `slice`)."""
    max_range: int = 1_000
    max_operations: int = 50_000


DEFAULT_LIMITS = TemplateLimits()


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


# --- the work budget ----------------------------------------------------------------------


class _LimitExceeded(SecurityError):
    pass


class _Budget:
    __slots__ = ("limits", "remaining")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.remaining = limits.max_operations

    def charge(self, units: int = 1) -> None:
        self.remaining -= units
        if self.remaining < 0:
            raise _LimitExceeded(
                f"the template does too much work (over {self.limits.max_operations} operations)"
            )


# Per render, and per thread or task: one environment serves every render concurrently.
_budget: ContextVar[_Budget | None] = ContextVar("leadloop_template_budget", default=None)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # fail closed: a template compiled here only runs under a budget
        raise _LimitExceeded("templates render only through leadloop.personalization.templates")
    return budget


def _charge(units: int = 1) -> TemplateLimits:
    budget = _current()
    budget.charge(units)
    return budget.limits


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise _LimitExceeded(message)


def _check_size(value: Any) -> Any:
    limits = _current().limits
    if isinstance(value, str):
        _require(
            len(value) <= limits.max_output_chars,
            f"a text over {limits.max_output_chars} characters",
        )
    elif isinstance(value, list | tuple):
        _require(len(value) <= limits.max_items, f"a list over {limits.max_items} items")
    elif isinstance(value, int) and not isinstance(value, bool):
        _require(value.bit_length() <= MAX_INT_BITS, "a number too large for a template")
    return value


# --- the sandbox --------------------------------------------------------------------------


_ITERATE = f"{__name__}._iterate"


def _iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _charge()
        yield item


class _GuardedCodeGenerator(CodeGenerator):
    # Jinja forbids new node types, so a loop's iterable is wrapped in a call to an imported
    # name: templates cannot spell `ImportedName`, so they cannot reach or skip the guard.
    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        # Rewritten before any code is written: imports are collected from the whole tree first.
        for loop in node.find_all(nodes.For):
            line = loop.iter.lineno
            guard = nodes.ImportedName(_ITERATE, lineno=line)
            loop.iter = nodes.Call(guard, [loop.iter], [], None, None, lineno=line)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.leadloop_sized(")
        super().visit_Concat(node, frame)
        self.write(")")


def _bounded_concat(parts: Iterable[str]) -> str:
    """`concat` of buffered blocks: refuses before joining more than the output limit."""
    limit = _current().limits.max_output_chars
    pieces: list[str] = []
    total = 0
    for piece in parts:
        total += len(piece)
        _require(total <= limit, f"a block renders over {limit} characters")
        pieces.append(piece)
    return "".join(pieces)


def _guarded_range(*args: int) -> range:
    numbers = range(*args)
    limits = _current().limits
    try:
        size = len(numbers)
    except OverflowError:
        size = limits.max_range + 1
    _require(size <= limits.max_range, f"range() of more than {limits.max_range} numbers")
    _charge(size)
    return numbers


class _Sandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _GuardedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def leadloop_sized(self, value: str) -> str:
        _check_size(value)
        return value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limits = _charge()
        if operator == "%" and isinstance(left, str):
            raise SecurityError("'%' formatting of text is not allowed; use the format filter")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    cap = limits.max_output_chars if isinstance(seq, str) else limits.max_items
                    _require(len(seq) * times <= cap, f"repetition over {cap} items")
        if operator == "**" and isinstance(left, int) and isinstance(right, int):
            bits = max(left.bit_length(), 1) * abs(right)
            _require(bits <= MAX_INT_BITS, "a power too large for a template")
        return _check_size(super().call_binop(context, operator, left, right))

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _charge()
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        # Methods are where amplification and escapes hide; `loop.cycle()` is the exception.
        return not callable(value) or isinstance(obj, LoopContext)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja hands out a sandboxed `str.format`, but a format spec such as `{:>999999999}`
        # still allocates; the `format` filter is the checked way to format.
        return None

    def getattr(self, obj: Any, attribute: str) -> Any:
        _charge()
        # A trait called "items" or "keys" is the data, not the dict method.
        if isinstance(obj, Mapping) and attribute in obj and not attribute.startswith("_"):
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _charge()
        return super().getitem(obj, argument)


# --- filters ------------------------------------------------------------------------------

_F = TypeVar("_F", bound=Callable[..., Any])
_EXCLUDED_FILTERS = frozenset({"random", "pprint", "urlize"})
"""`random` would make rendering non-deterministic; `pprint` is for debugging; `urlize` multiplies
`target`/`rel` per link in the text."""


def _metered(func: _F) -> _F:
    # functools.wraps also copies `jinja_pass_arg`, so Jinja still passes context/environment.
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _charge()
        return _check_size(func(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


def _center(value: Any, width: int = 80) -> str:
    limit = _current().limits.max_output_chars
    _require(width <= limit, f"center width over {limit}")
    return filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = len(width) if isinstance(width, str) else width
    limit = _current().limits.max_output_chars
    _require(len(text) + (text.count("\n") + 1) * pad <= limit, f"indent output over {limit}")
    return filters.do_indent(s, width, first, blank)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(filters.make_attrgetter(eval_ctx.environment, attribute), items))
    limit = _charge(len(items)).max_output_chars
    _require(
        sum(len(str(item)) for item in items) + len(d) * len(items) <= limit,
        f"join output over {limit} characters",
    )
    return filters.sync_do_join(eval_ctx, items, d)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(s), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if count is not None:
        hits = min(hits, max(count, 0))
    limit = _current().limits.max_output_chars
    _require(
        len(text) + hits * max(0, len(new) - len(old)) <= limit, f"replace output over {limit}"
    )
    return filters.do_replace(eval_ctx, s, old, new, count)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d*)(?:\.(\*|\d*))?")


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    for width, precision in _PRINTF.findall(str(value)):
        for number in (width, precision):
            _require(number != "*" and (not number or int(number) <= 100), "format width over 100")
    return filters.do_format(value, *args, **kwargs)


def _wordwrap_guard(func: _F) -> _F:
    @functools.wraps(func)
    def wrapper(environment: Any, s: Any, width: int = 79, *args: Any, **kwargs: Any) -> Any:
        wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
        _require(width >= 1, "wordwrap width must be at least 1")
        _require(wrapstring is None or len(str(wrapstring)) <= 8, "wordwrap wrapstring over 8")
        return func(environment, s, width, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _counted(position: int, name: str, func: _F) -> _F:
    """A filter whose argument at `position` is a number of lists to build."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        count = args[position] if len(args) > position else kwargs.get(name, 1)
        limit = _current().limits.max_items
        _require(isinstance(count, int) and 0 < count <= limit, f"{name} must be 1..{limit}")
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: int | None = None) -> Any:
    _require(indent is None or 0 <= indent <= 8, "tojson indent over 8")
    return filters.do_tojson(eval_ctx, value, indent)


def _filters() -> dict[str, Callable[..., Any]]:
    chosen: dict[str, Callable[..., Any]] = {
        name: func for name, func in filters.FILTERS.items() if name not in _EXCLUDED_FILTERS
    }
    chosen.update(
        center=_center,
        indent=_indent,
        join=_join,
        replace=_replace,
        format=_format,
        wordwrap=_wordwrap_guard(filters.do_wordwrap),
        batch=_counted(1, "linecount", filters.do_batch),
        slice=_counted(1, "slices", filters.sync_do_slice),
        tojson=_tojson,
    )
    return {name: _metered(func) for name, func in chosen.items()}


def _environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(autoescape=autoescape, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters = _filters()
    # No lipsum/cycler/joiner: only what message copy needs, each bounded.
    env.globals = {"range": _guarded_range, "dict": dict, "namespace": Namespace}
    env.concat = _bounded_concat  # type: ignore[method-assign]
    return env


_ENVIRONMENTS = {False: _environment(False), True: _environment(True)}
_GLOBAL_NAMES = frozenset(_ENVIRONMENTS[False].globals)


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
    if isinstance(exc, _LimitExceeded):
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
    return _ENVIRONMENTS[autoescape].from_string(source)


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
    token = _budget.set(_Budget(limits))
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
        _budget.reset(token)


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
    free = meta.find_undeclared_variables(ast) - _GLOBAL_NAMES
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
        ast = _ENVIRONMENTS[autoescape].parse(source)
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
_WHITESPACE = re.compile(r"\s+")


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
    # A header must not carry CR/LF (header injection); template whitespace folds to spaces.
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
