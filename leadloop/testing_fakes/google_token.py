"""A local fake of Google's OAuth 2.0 token endpoint for service accounts (`POST /token`, the JWT
bearer grant of RFC 7523), served by `FakeAdsServer` beside the platforms.

It verifies each assertion the way Google does: the RS256 signature against the public key of
the `kid` it names (checked by a real verifier, `google.auth.jwt.decode` from `google-auth`, a
test dependency imported only when an assertion arrives), `aud` equal to the token URI, `iss`
the account that owns the key, a known scope, and a lifetime of at most an hour around the
fake's clock. It answers like Google: `{"access_token", "expires_in", "token_type": "Bearer"}`,
or HTTP 400 `{"error": "invalid_grant", "error_description": ...}`. Tokens it issued are valid
at the Data Manager and Ads API fakes until they expire on the fake's clock or are revoked.

    fake.google_token.trust(key_id, public_pem, "sa@project.iam.gserviceaccount.com")
    fake.google_token.revoke_all()        # the APIs now answer 401 to every issued token
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import time
from typing import Any

from leadloop.clock import Clock
from leadloop.testing_fakes.base import FakePlatform, Recorded, Response

PATH = "/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPES = frozenset(
    {"https://www.googleapis.com/auth/datamanager", "https://www.googleapis.com/auth/adwords"}
)
MAX_LIFETIME = 3600
LEEWAY = 60
BAD_SIGNATURE = "Invalid JWT Signature."
BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


class FakeGoogleToken(FakePlatform):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.audience = ""
        """The token URI a key file names (`FakeAdsServer` sets it to `{base_url}/token`)."""
        self.expires_in = 3600
        self.grants: list[dict[str, Any]] = []
        """The verified claims of every assertion granted a token."""
        self._keys: dict[str, tuple[str, str]] = {}
        self._issued: dict[str, float] = {}
        self._count = itertools.count(1)

    def trust(self, key_id: str, public_pem: str, client_email: str) -> None:
        """Register a service account's key, as Google Cloud does when the key is created."""
        with self._lock:
            self._keys[key_id] = (public_pem, client_email)

    def revoke_all(self) -> None:
        with self._lock:
            self._issued.clear()

    def valid(self, token: str) -> bool:
        """Whether an API fake should take `token` as a bearer now."""
        with self._lock:
            expiry = self._issued.get(token)
        return expiry is not None and self.clock.now() < expiry

    def serve(self, request: Recorded) -> Response:
        form = request.body if isinstance(request.body, dict) else {}
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _oauth_error("invalid_request", "expected a form-encoded body")
        if form.get("grant_type") != GRANT_TYPE:
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or assertion.count(".") != 2:
            return _oauth_error("invalid_request", "Invalid assertion")
        claims = self._verify(assertion)
        if isinstance(claims, str):
            return _oauth_error("invalid_grant", claims)
        token = f"ya29.fake-{next(self._count)}"
        # `handle` holds the lock while it serves.
        self._issued[token] = self.clock.now() + self.expires_in
        self.grants.append(claims)
        body = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return 200, {}, body

    def _verify(self, assertion: str) -> dict[str, Any] | str:
        """The verified claims, or Google's `error_description` for the refusal."""
        from google.auth import jwt  # the test extra: a real verifier, not our own code

        header = _header(assertion)
        if header.get("alg") != "RS256":
            return "Invalid JWT: unsupported algorithm"
        trusted = self._keys.get(str(header.get("kid")))
        if trusted is None:
            return BAD_SIGNATURE
        public_pem, client_email = trusted
        # google-auth checks iat/exp against the wall clock; the fake lives on its own clock
        # (manual in tests), so that check is widened by their gap and done exactly below.
        gap = math.ceil(abs(self.clock.now() - time.time())) + 2 * LEEWAY
        try:
            claims: dict[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                assertion,
                certs={str(header["kid"]): public_pem},
                audience=self.audience,
                clock_skew_in_seconds=gap,
            )
        except ValueError as error:
            text = str(error)
            return BAD_SIGNATURE if "signature" in text.lower() else f"Invalid JWT: {text}"
        if claims.get("iss") != client_email:
            return "Invalid JWT: iss is not the account that owns the key"
        if claims.get("scope") not in SCOPES:
            return f"Invalid JWT: unknown scope {claims.get('scope')!r}"
        issued, expires = claims.get("iat"), claims.get("exp")
        now = self.clock.now()
        if not isinstance(issued, int) or not isinstance(expires, int):
            return BAD_TIMES
        if expires - issued > MAX_LIFETIME or issued > now + LEEWAY or expires <= now - LEEWAY:
            return BAD_TIMES
        return claims


def _header(assertion: str) -> dict[str, Any]:
    raw = assertion.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _oauth_error(code: str, description: str) -> Response:
    return 400, {}, {"error": code, "error_description": description}
