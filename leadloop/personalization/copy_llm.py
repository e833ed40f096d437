"""Copy variants from a language model behind an OpenAI-compatible chat completions API (OpenAI,
Azure OpenAI, a local llama.cpp or vLLM server...). What it writes is only a candidate: each line
goes through `copy.guard` like any other."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from leadloop.personalization.copy import SUBJECT_CHARS, Brief, Part

TIMEOUT = 60.0
"""For each step: connecting, sending, each read."""
DEADLINE = 120.0
"""For the whole answer once it starts: a server sending a byte a minute never trips TIMEOUT."""
MAX_ANSWER_BYTES = 1024 * 1024
"""Far above any list of short lines; a larger answer is not one."""

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


class CopyProviderError(Exception):
    """The provider could not be reached or did not answer as the API describes."""


@dataclass(frozen=True, slots=True)
class Provider:
    api_base: str
    """Up to and including the version, as OpenAI clients take it: `https://api.openai.com/v1`."""
    api_key: str
    model: str


def prompt(brief: Brief, part: Part, count: int) -> list[dict[str, str]]:
    what = "email subject lines" if part == "subject" else "short chat messages"
    limit = f" of at most {SUBJECT_CHARS - 8} characters" if part == "subject" else ""
    facts = "\n".join(f"- {fact}" for fact in brief.facts) or "- (none beyond the original)"
    return [
        {
            "role": "system",
            "content": (
                "You write marketing copy variants for a careful sender. Use only the facts "
                "given: never add a number, price, discount, date or claim that is not in them. "
                "No all-caps words, at most one exclamation mark, no spam phrases. Keep any "
                "{{ ... }} or ${...} placeholder exactly as written. Answer with one variant per line, "
                "nothing else."
            ),
        },
        {
            "role": "user",
            "content": (
                f"Write {count} alternative {what}{limit} for this original:\n{brief.base}\n\n"
                f"Facts you may use:\n{facts}"
            ),
        },
    ]


def suggest(
    provider: Provider,
    brief: Brief,
    part: Part,
    count: int,
    client: httpx2.Client | None = None,
) -> list[str]:
    """The provider's candidate lines, cleaned of list bullets and quotes."""
    own = client is None
    http = client or httpx2.Client(timeout=TIMEOUT, follow_redirects=False)
    url = provider.api_base.rstrip("/") + "/chat/completions"
    shown = _shown(url)
    body = {"model": provider.model, "messages": prompt(brief, part, count), "temperature": 0.8}
    try:
        with http.stream(
            "POST", url, json=body, headers={"Authorization": f"Bearer {provider.api_key}"}
        ) as response:
            raw = b""
            deadline = time.monotonic() + DEADLINE
            # Read no further than the limit: the answer's size is the provider's to choose.
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    break
                if time.monotonic() > deadline:
                    raise CopyProviderError(f"{shown} did not answer within {DEADLINE:g} s")
    # A host name that is no IDNA label (UnicodeError) is found as the request is sent.
    except (httpx2.HTTPError, httpx2.InvalidURL, UnicodeError) as error:
        raise CopyProviderError(f"cannot reach {shown}: {_printable(str(error))}") from error
    finally:
        if own:
            http.close()
    if len(raw) > MAX_ANSWER_BYTES:
        raise CopyProviderError(f"{shown} answered more than {MAX_ANSWER_BYTES} bytes")
    if response.status_code != 200:
        raise CopyProviderError(
            f"{shown} answered {response.status_code}: {_error_message(raw) or 'no message'}"
        )
    return _lines(raw, shown)


def url_parse_problem(url: str) -> str | None:
    """Why the HTTP client cannot parse `url` (a port that is no number...); None: it can."""
    try:
        httpx2.URL(url)
    except httpx2.InvalidURL as error:
        return str(error)
    return None


def _shown(url: str) -> str:
    """`url` without its `user:password@`, for messages."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _printable(text: str) -> str:
    """A server's words with control characters (a terminal's escapes) as spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


def _error_message(raw: bytes) -> str | None:
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return _printable(str(message)[:300]) if message else None


def _lines(raw: bytes, url: str) -> list[str]:
    try:
        answer: Any = json.loads(raw)
        content = answer["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise CopyProviderError(f"{url} did not answer a chat completion: {error!r}") from error
    if isinstance(content, list):
        # Some OpenAI-compatible servers answer typed parts; the text ones, in order, are the
        # answer (parts may split a line).
        content = "".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    if not isinstance(content, str):
        raise CopyProviderError(f"{url} answered a completion without text content")
    out: list[str] = []
    for line in content.splitlines():
        text = _BULLET.sub("", line).strip().strip('"“”').strip()
        if text:
            out.append(text)
    return out
