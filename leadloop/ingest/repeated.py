"""Signed JSON bodies that repeat a key in one object are refused.

JSON leaves a repeated key's meaning to the parser (RFC 8259 §4): msgspec and Python's `json`
keep the last value, others the first or refuse. A signature vouches for the bytes, not for one
reading of them, so `{"type": "track", "type": "identify"}` signed by a sender whose parser read
the first value would be acted on as something it did not sign. Such a body is a 400 naming the
key, and nothing of it is stored or applied.

Only for signed bodies (the playbook's `sources:` and the provider webhooks, Twilio's
form-encoded callbacks included: a repeated parameter is refused the same way): this second parse
costs 3.5 (a 100-message tracking batch) to 7 (one message) times msgspec's decoding, more than
half of the request's whole parsing and validation, and a tracking client's request carries no
signature whose meaning could differ from ours: the tracking API keeps the last value.
"""

from __future__ import annotations

import json
from typing import Any

from leadloop.ingest import parse
from leadloop.ingest.model import MAX_DEPTH, Rejected

_SHOWN_CHARS = 100


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return found


def repeated_key(body: bytes) -> str | None:
    """The first key `body` repeats within one object (compared decoded: `"\\u0074ype"` is
    `type`), or None. `body` is JSON msgspec has already read."""
    try:
        # Numbers as their length (a builtin, no Python frame): their values do not matter
        # here, and `int` refuses more than 4,300 digits, which msgspec reads.
        json.loads(body, object_pairs_hook=_unique, parse_int=len, parse_float=len)
    except _Repeated as found:
        return found.key
    return None


def refuse_repeated(body: bytes) -> Rejected | None:
    """The refusal of `body` (JSON msgspec has read) when it repeats a key, else None."""
    try:
        key = repeated_key(body)
    except RecursionError:  # deeper than Python's parser goes, where msgspec went
        return Rejected("invalid_json", f"the body nests deeper than {MAX_DEPTH} levels")
    if key is None:
        return None
    return Rejected(
        "duplicate_key",
        f"the body repeats the key {_shown(key)!r} in one object: a signed body must have one "
        "reading",
    )


def refuse_repeated_params(
    pairs: list[tuple[str, str]], where: str = "the body"
) -> Rejected | None:
    """The refusal of signed form-encoded parameters (a Twilio callback's body, or its URL's
    query) that repeat one, else None. Twilio's signature covers every value of a repeated
    name, and a mapping keeps the last where the sender's reading may take the first: as a
    repeated JSON key."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return Rejected(
                "duplicate_key",
                f"{where} repeats the parameter {_shown(name)!r}: a signed request must have "
                "one reading",
            )
        seen.add(name)
    return None


def _shown(key: str) -> str:
    return key if len(key) <= _SHOWN_CHARS else key[:_SHOWN_CHARS] + "..."


def decode_signed(body: bytes) -> Any:
    """`parse.decode_json_value`, refusing a key repeated in one object (`duplicate_key`)."""
    value = parse.decode_json_value(body)
    if isinstance(value, Rejected):
        return value
    return refuse_repeated(body) or value
