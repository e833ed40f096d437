"""`leadloop copy variants`: alternatives to a template's subject or text, guarded, printed as
the playbook lines that add them as a variant set. Nothing is applied: a person reads them."""

from __future__ import annotations

import argparse
import os
import sys
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from leadloop.config import Settings, whole_number
from leadloop.errors import LeadloopError

MAX_COUNT = 10
MAX_FACT_CHARS = 500


def _count(raw: str) -> int:
    if not whole_number(raw):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {raw[:40]!r}")
    if len(raw) > 6 or not 1 <= int(raw) <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_COUNT}, got {raw[:40]}")
    return int(raw)


def _fact(raw: str) -> str:
    text = raw.strip()
    if not text or len(text) > MAX_FACT_CHARS or len(text.splitlines()) > 1:
        raise argparse.ArgumentTypeError(f"a fact is one line of 1 to {MAX_FACT_CHARS} characters")
    # A fact is sent to a provider and may be printed in a variant: an escape sequence in it
    # would reach the terminal.
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise argparse.ArgumentTypeError("a fact is visible text, without control characters")
    return text


def register(sub: Any, db_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    from leadloop.cli import label

    group = sub.add_parser("copy", help="write and check copy variants for a template")
    actions = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "variants",
        help="alternatives to a template's subject (email) or text, each checked by guardrails",
    )
    p.add_argument("playbook", help="playbook file or folder holding the template")
    p.add_argument("--template", type=label, required=True, help="the template's name")
    p.add_argument(
        "--channel",
        choices=["email", "whatsapp", "instagram", "sms"],
        default="email",
        help="its channel (default: email; the subject is varied, else the text)",
    )
    p.add_argument(
        "--count", type=_count, default=3, help=f"variants wanted, 1 to {MAX_COUNT} (default 3)"
    )
    p.add_argument(
        "--fact",
        type=_fact,
        action="append",
        default=[],
        help="something true a variant may say (repeatable; an email's preheader is one already)",
    )
    p.add_argument(
        "--provider",
        choices=["template", "openai"],
        default="template",
        help="template: rewordings of the template and facts (default, offline); openai: an "
        "OpenAI-compatible API (LEADLOOP_COPY_API_BASE, LEADLOOP_COPY_API_KEY, LEADLOOP_COPY_MODEL)",
    )
    p.set_defaults(handler=cmd_copy_variants)


def _template(
    playbook_path: str, channel: str, name: str
) -> tuple[str, list[str], dict[str, Any], set[str]]:
    """(the text to vary, facts it carries, its raw playbook mapping), all before `${ENV}`, and
    the names of the channel's templates."""
    from leadloop.channels.config import parse_channels
    from leadloop.playbook import store
    from leadloop.playbook.nodes import to_raw

    playbook = store.build(store.read_sources(playbook_path))
    node = playbook.sections.get("channels")
    config = parse_channels(node)
    raw_templates = (to_raw(node) or {}).get("templates") or {} if node is not None else {}
    declared = raw_templates.get(channel) or {}
    raw = declared.get(name)
    if channel == "email":
        email = config.email_templates.get(name)
        if email is None or not isinstance(raw, dict):
            known = ", ".join(sorted(config.email_templates)) or "none"
            raise LeadloopError(f"no email template {name!r} in {playbook_path} (it has: {known})")
        # The text before `${ENV}` substitution: a variable's value (a code, a token) is neither
        # sent to a provider nor printed, and a variant keeps following the variable.
        preheader = str(raw.get("preheader") or "")
        return str(raw["subject"]), [preheader] if preheader.strip() else [], raw, set(declared)
    message = config.messages.get((channel, name))
    if message is None or not isinstance(raw, dict):
        known = ", ".join(sorted(n for c, n in config.messages if c == channel)) or "none"
        raise LeadloopError(f"no {channel} template {name!r} in {playbook_path} (it has: {known})")
    if not message.text:
        raise LeadloopError(f"{channel} template {name!r} has no `text` to vary")
    return str(raw["text"]), [], raw, set(declared)


def _provider_from_env(env: Mapping[str, str]) -> Any:
    from leadloop.personalization.copy_llm import Provider, url_parse_problem
    from leadloop.playbook.fields import url_problem

    names = ("LEADLOOP_COPY_API_BASE", "LEADLOOP_COPY_API_KEY", "LEADLOOP_COPY_MODEL")
    missing = [name for name in names if not env.get(name, "").strip()]
    if missing:
        raise LeadloopError(f"--provider openai needs {', '.join(missing)} set")
    provider = Provider(*(env[name].strip() for name in names))
    problem = url_problem(provider.api_base) or url_parse_problem(provider.api_base)
    if problem:
        raise LeadloopError(f"LEADLOOP_COPY_API_BASE: {problem}")
    # A header value: anything else fails as the request is built, with part of the key shown.
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in provider.api_key):
        raise LeadloopError("LEADLOOP_COPY_API_KEY: expected printable ASCII without spaces")
    return provider


def cmd_copy_variants(args: argparse.Namespace, settings: Settings) -> int:
    from leadloop.channels.templates import sample_context
    from leadloop.personalization.copy import Brief, Part, guard, template_variants
    from leadloop.personalization.copy_llm import CopyProviderError, suggest

    base, facts, raw, taken = _template(args.playbook, args.channel, args.template)
    brief = Brief(base=base, facts=(*facts, *args.fact))
    part: Part = "subject" if args.channel == "email" else "text"
    if args.provider == "openai":
        try:
            candidates = suggest(_provider_from_env(os.environ), brief, part, args.count)
        except CopyProviderError as error:
            raise LeadloopError(str(error)) from error
    else:
        candidates = template_variants(brief, args.count)
    sample = sample_context()
    accepted: list[str] = []
    rejected: list[tuple[str, tuple[str, ...]]] = []
    for candidate in candidates:
        if len(accepted) == args.count:
            break
        verdict = guard(candidate, brief, part, sample, args.channel, accepted)
        if verdict.accepted:
            accepted.append(verdict.text)
        else:
            rejected.append((verdict.text, verdict.problems))
    for text, problems in rejected:
        print(f"refused: {text!r}: {'; '.join(problems)}", file=sys.stderr)
    if not accepted:
        print(
            "no variant passed the guardrails"
            + ("" if brief.facts else " (give facts to work from with --fact)"),
            file=sys.stderr,
        )
        return 1
    names = _names(args.template, taken, len(accepted))
    templates = {name: {**raw, part: text} for name, text in zip(names, accepted, strict=True)}
    print(f"# {len(accepted)} variant(s) of {args.channel} template {args.template!r}.")
    print(f"# Add under channels.templates.{args.channel}:")
    print(_yaml(templates), end="")
    print("# Then send them from the step as a variant set (docs/journeys.md, Variant sets):")
    step = {"selection": "thompson", "variants": [{"template": n} for n in (args.template, *names)]}
    print(_yaml(step), end="")
    return 0


def _names(template: str, taken: set[str], count: int) -> list[str]:
    """`guide_2`, `guide_3`...: pasted into the same mapping, a name the playbook has would
    replace that template, perhaps one a journey sends."""
    names: list[str] = []
    n = 2
    while len(names) < count:
        if f"{template}_{n}" not in taken:
            names.append(f"{template}_{n}")
        n += 1
    return names


class _Dumper(yaml.SafeDumper):
    """Multi-line text as literal blocks, as a person writes a template; no anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    # PyYAML writes a NEL (U+0085) as is in a plain or quoted scalar, where reading folds it
    # into a space; a double-quoted one escapes it.
    style = '"' if "\x85" in data else "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _text)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)
