"""Conversions stage: CRM milestones and checkouts forwarded to ad platforms as hashed,
server-side conversions (Meta CAPI, Google Data Manager, TikTok Events API).

Pure core only: `model` (values), `normalize` (per-platform normalisation + SHA-256), `payloads`
(request bodies, ids, send checks) and `decide` (what a response means, when to retry).
research/capi.md is the spec.
"""

from leadloop.conversions.decide import (
    Bisect,
    Delivered,
    Outcome,
    Reject,
    Retry,
    classify_response,
    next_attempt,
)
from leadloop.conversions.model import (
    Content,
    Conversion,
    Destination,
    GoogleDestination,
    MetaDestination,
    Platform,
    TikTokDestination,
    UserIdentifiers,
    platform_of,
)
from leadloop.conversions.payloads import (
    MAX_EVENTS,
    build_request,
    check_conversion,
    check_event_age,
    compute_appsecret_proof,
    derive_event_id,
    request_url,
    split_batches,
)

__all__ = [
    "MAX_EVENTS",
    "Bisect",
    "Content",
    "Conversion",
    "Delivered",
    "Destination",
    "GoogleDestination",
    "MetaDestination",
    "Outcome",
    "Platform",
    "Reject",
    "Retry",
    "TikTokDestination",
    "UserIdentifiers",
    "build_request",
    "check_conversion",
    "check_event_age",
    "classify_response",
    "compute_appsecret_proof",
    "derive_event_id",
    "next_attempt",
    "platform_of",
    "request_url",
    "split_batches",
]
