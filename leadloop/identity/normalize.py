"""Identifier normalisation for the identity graph (not for ad platforms: their rules differ,
see `leadloop.conversions`)."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

import idna
import phonenumbers

from leadloop.digits import ascii_digits


def normalize_email(value: Any) -> str | None:
    """Trimmed and lowercased, the domain in one form however it was written (`_domain`,
    without the root's trailing dot)."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if len(email) > _MAX_RAW_EMAIL:
        return None
    local, at, domain = email.partition("@")
    if at and not (domain.isascii() and "xn--" not in domain):
        domain = _domain(domain)
        email = f"{local}@{domain}"
    if domain.endswith(".") and not domain.endswith(".."):
        # `example.com.` is `example.com` written relative to the DNS root (after `_domain`,
        # which maps `。` to `.`). Only one dot goes: `..` is an empty label, no root.
        domain = domain[:-1]
        email = f"{local}@{domain}"
    if not at or not local or "." not in domain or " " in email or len(email) > 254:
        return None
    # The tracking API refuses U+0000 now; a log written before that may still hold it, and
    # PostgreSQL cannot even look such a value up (the processor would retry it forever).
    return None if "\x00" in email else email


_MAX_RAW_EMAIL = 1024
"""Bounds the IDNA work on a value that cannot be an address (254 characters) even after NFC
shortened it."""


def _domain(domain: str) -> str:
    """A non-ASCII or punycode (`xn--`) domain in its Unicode form: `bücher.example` typed
    composed, decomposed (NFD) or as `xn--bcher-kva.example` is one mailbox's domain.

    Unicode rather than punycode because the conversions stage hashes this value, and the ad
    platforms ask for the address as the person typed it, trimmed and lowercased (NFC): an
    address typed in Unicode keeps the hash it always had. UTS #46 (non-transitional, IDNA
    2008) also maps full-width letters and `。` and keeps `ß` (`faß.de` is not `fass.de`).
    A domain IDNA refuses (bad punycode, `_`, a label over 63 characters) is no delivery
    address, but it still identifies the person it did: it is kept, in NFC.
    """
    try:
        return idna.decode(idna.encode(domain, uts46=True))
    except UnicodeError:  # idna.IDNAError and the codecs' errors alike
        return unicodedata.normalize("NFC", domain)


def normalize_phone(value: Any, default_region: str | None) -> str | None:
    """E.164, or None when the number cannot be placed (no `+` and no default region) or its
    digits mix scripts (`ascii_digits`: one script's digits read as the ASCII ones)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    value = ascii_digits(value)
    if value is None:
        return None
    # A number in E.164 form reads the same in every region (checked on generated numbers in
    # the tests; looser `+` forms such as `+0 …` do not), so its memo entry is region-free and
    # shared with the conversions stage (`international_e164`).
    return _e164(value, None if _E164_FORM.fullmatch(value) else default_region)


_E164_FORM = re.compile(r"\+[1-9][0-9]{6,14}")


def phone_identity(value: Any, default_region: str | None) -> str | None:
    """The phone as the identity graph's identifier: as `normalize_phone`, but None for a
    number with an extension, whose E.164 form is the switchboard everyone behind it shares
    (two leads of one company would be merged by it)."""
    phone = normalize_phone(value, default_region)
    if phone is None or not isinstance(value, str) or _PLAIN_PHONE.fullmatch(value):
        return phone
    return None if _has_extension(ascii_digits(value) or "", default_region) else phone


_PLAIN_PHONE = re.compile(r"[0-9+()./\s-]*")
"""Characters none of phonenumbers' extension markers (`ext`, `x`, `#`, `;ext=`, `,,`, ...)
is made of: most numbers need no second parse."""


@functools.lru_cache(maxsize=4096)
def _has_extension(value: str, default_region: str | None) -> bool:
    try:
        return bool(phonenumbers.parse(value, default_region).extension)
    except phonenumbers.NumberParseException:
        return False


def international_e164(value: str) -> str | None:
    """The canonical E.164 form of a number written in E.164 form (`+4402079460958` is
    `+442079460958`; impossible numbers are None), as `normalize_phone` gives it in any region:
    the conversions stage makes trait phones canonical with this, and finds the parse the
    identity graph already did for the same `identify`."""
    return _e164(value, None)


@functools.lru_cache(maxsize=32_768)
def _e164(value: str, default_region: str | None) -> str | None:
    """Memoised (a pure function of its two strings): a person's phone comes back with every
    `identify` they send, and `phonenumbers.parse` costs about 20 µs each time."""
    try:
        parsed = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not dialable(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def dialable(number: phonenumbers.PhoneNumber) -> bool:
    """A length that reaches a line from anywhere: `is_possible_number` also accepts numbers
    dialable only within their area (`555-1212` in the US), and those became a made-up E.164
    (`+15551212`) shared by everyone with that local number, across area codes."""
    reason = phonenumbers.is_possible_number_with_reason(number)
    return bool(reason == phonenumbers.ValidationResult.IS_POSSIBLE)


MAX_EXTERNAL_ID = 512
"""Like the tracking API's ids; a longer value is no identifier (and a PostgreSQL index cannot
hold one of a few kilobytes: the processor would retry the insert forever)."""


def normalize_external_id(entry: Any) -> str | None:
    """`context.externalIds` entries `{"id", "type", ...}` become `type:id`."""
    if not isinstance(entry, dict):
        return None
    ident, kind = entry.get("id"), entry.get("type")
    if not isinstance(ident, str | int) or isinstance(ident, bool) or not isinstance(kind, str):
        return None
    text = str(ident).strip()
    if not text or not kind.strip():
        return None
    value = f"{kind.strip()}:{text}"
    return None if len(value) > MAX_EXTERNAL_ID or "\x00" in value else value
