"""Conversions stage: CRM milestones and checkouts forwarded to ad platforms as hashed,
server-side conversions (Meta CAPI, Google Data Manager, TikTok Events API, and the Google Ads
API for accounts Google still allows).

Pure core only: `model` (values), `normalize` (per-platform normalisation + SHA-256), `payloads`
(request bodies, ids, send checks), `google_ads` (the Ads API's body and partial failures) and
`decide` (what a response means, when to retry).
research/capi.md is the spec.
"""

from leadloop.conversions.decide import (
    Bisect,
    Delivered,
    Outcome,
    PerEvent,
    Reject,
    Retry,
    classify_response,
    next_attempt,
)
from leadloop.conversions.model import (
    Content,
    Conversion,
    Destination,
    GoogleAdsDestination,
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
    "GoogleAdsDestination",
    "GoogleDestination",
    "MetaDestination",
    "Outcome",
    "PerEvent",
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
