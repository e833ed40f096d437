"""The sandbox templates render in: Jinja2's immutable sandbox, a size check wherever values
grow, and a deterministic work budget instead of a timeout (see `templates.py` for why).

`templates.py` is the public surface; this module holds the machinery it runs on.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from jinja2 import StrictUndefined, filters, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, pass_eval_context

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


# --- the work budget ----------------------------------------------------------------------


class LimitExceeded(SecurityError):
    pass


class Budget:
    __slots__ = ("limits", "remaining")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.remaining = limits.max_operations

    def charge(self, units: int = 1) -> None:
        self.remaining -= units
        if self.remaining < 0:
            raise LimitExceeded(
                f"the template does too much work (over {self.limits.max_operations} operations)"
            )


# Per render, and per thread or task: one environment serves every render concurrently.
ACTIVE_BUDGET: ContextVar[Budget | None] = ContextVar("leadloop_template_budget", default=None)


def current_budget() -> Budget:
    budget = ACTIVE_BUDGET.get()
    if budget is None:  # fail closed: a template compiled here only runs under a budget
        raise LimitExceeded("templates render only through leadloop.personalization.templates")
    return budget


def _charge(units: int = 1) -> TemplateLimits:
    budget = current_budget()
    budget.charge(units)
    return budget.limits


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise LimitExceeded(message)


def _check_size(value: Any) -> Any:
    limits = current_budget().limits
    if isinstance(value, int) and not isinstance(value, bool):
        _require(value.bit_length() <= MAX_INT_BITS, "a number too large for a template")
    else:
        _check_nested(value, limits)
    return value


def _check_nested(value: Any, limits: TemplateLimits) -> None:
    """Bound a value as `str`, `==`, `hash` and `tojson` see it: every item of every nested list,
    dict and namespace, and every character of the texts in them. One list can hold the same
    value many times, so a short `['x' * 99999] * 10000` is a gigabyte once printed, and `[a, a]`
    nested thirty times is 2**30 items. Walking stops at the limit and each item costs a unit."""
    items = chars = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
            _require(
                chars <= limits.max_output_chars,
                f"a text over {limits.max_output_chars} characters",
            )
            continue
        if isinstance(item, Namespace):
            item = object.__getattribute__(item, "_Namespace__attrs")
        if isinstance(item, Mapping | list | tuple | set | frozenset):
            items += len(item)
            _require(items <= limits.max_items, f"a list over {limits.max_items} items")
            if isinstance(item, Mapping):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
    _charge(items)


class _SizedNamespace(Namespace):
    """`namespace()`, whose `{% set ns.attr = ... %}` keeps the whole namespace under the limits:
    the assignment is the one way to grow a value that is neither a call, an operator nor a
    literal."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, value)
        _check_size(self)


# --- the sandbox --------------------------------------------------------------------------


_ITERATE = f"{__name__}._iterate"
_TEXT = f"{__name__}._text"
_T = TypeVar("_T")


def _text(value: Any) -> Any:
    """An operand of `~`: a null is joined as nothing, as `{{ }}` prints it (`"Hi " ~ name`
    gave "Hi None")."""
    return "" if value is None else value


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
        for concat in node.find_all(nodes.Concat):
            concat.nodes = [
                nodes.Call(nodes.ImportedName(_TEXT), [part], [], None, None, lineno=part.lineno)
                for part in concat.nodes
            ]
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.leadloop_sized(")
        super().visit_Concat(node, frame)
        self.write(")")

    # List, tuple and dict literals are checked like call results: `[a, a]` doubles `a`.
    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.leadloop_sized(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":  # an assignment target (`{% for k, v in ... %}`), not a value
            super().visit_Tuple(node, frame)
            return
        self.write("environment.leadloop_sized(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.leadloop_sized(")
        super().visit_Dict(node, frame)
        self.write(")")


def _bounded_concat(parts: Iterable[str]) -> str:
    """`concat` of buffered blocks: refuses before joining more than the output limit."""
    limit = current_budget().limits.max_output_chars
    pieces: list[str] = []
    total = 0
    for piece in parts:
        total += len(piece)
        _require(total <= limit, f"a block renders over {limit} characters")
        pieces.append(piece)
    return "".join(pieces)


def _guarded_range(*args: int) -> range:
    numbers = range(*args)
    limits = current_budget().limits
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

    def leadloop_sized(self, value: _T) -> _T:
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
        if isinstance(__obj, LoopContext) and args:
            # `loop(items)` of a recursive loop iterates outside the compiled `for`, which the
            # code generator meters: without this, each call ran its items for free.
            args = (_iterate(args[0]), *args[1:])
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
    limit = current_budget().limits.max_output_chars
    _require(width <= limit, f"center width over {limit}")
    return filters.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = len(width) if isinstance(width, str) else width
    limit = current_budget().limits.max_output_chars
    _require(len(text) + (text.count("\n") + 1) * pad <= limit, f"indent output over {limit}")
    return filters.do_indent(s, width, first, blank)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(filters.make_attrgetter(eval_ctx.environment, attribute), items))
    items = [_text(item) for item in items]  # a null joins as nothing, as it prints
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
    limit = current_budget().limits.max_output_chars
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
        limit = current_budget().limits.max_items
        _require(isinstance(count, int) and 0 < count <= limit, f"{name} must be 1..{limit}")
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    # A trait set to null (an identify clearing it, a form's empty field) has no value either:
    # `Hi {{ traits.first_name | default('there') }}` printed "Hi None".
    if value is None:
        return default_value
    return filters.do_default(value, default_value, boolean)


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
        default=_default,
        d=_default,
    )
    return {name: _metered(func) for name, func in chosen.items()}


@pass_eval_context
def _print_null_as_nothing(eval_ctx: EvalContext, value: Any) -> Any:
    # A trait set to null (an identify clearing it, a form's empty field) printed "None" into
    # the message; a reader expects nothing there. Only what `{{ }}` prints: `is none` and
    # comparisons still see None. Taking the eval context makes Jinja call this at render time
    # for constants too: folded at compile time, an HTML part's `{{ none }}` is escaped to
    # "None" before finalize sees it.
    return "" if value is None else value


def _environment(autoescape: bool) -> _Sandbox:
    env = _Sandbox(
        autoescape=autoescape,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        finalize=_print_null_as_nothing,
    )
    env.filters = _filters()
    # No lipsum/cycler/joiner: only what message copy needs, each bounded.
    env.globals = {"range": _guarded_range, "dict": dict, "namespace": _SizedNamespace}
    env.concat = _bounded_concat  # type: ignore[method-assign]
    return env


ENVIRONMENTS = {False: _environment(False), True: _environment(True)}
GLOBAL_NAMES = frozenset(ENVIRONMENTS[False].globals)
