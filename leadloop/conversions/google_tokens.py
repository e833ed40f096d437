"""Access tokens for Google service accounts, fetched on demand and cached per account and scope.

`ConversionSender` owns one `AccessTokens` and asks it for a bearer token before each request to
a destination configured with a `service_account_file`. The sender runs in the dispatcher's
threads (docs/decisions/0001-concurrency.md: HTTP to the platforms is blocking, in worker
threads, never on the API's event loop), so this is blocking too, on the sender's own
`httpx2.Client`, and thread-safe: requests in flight at once (`PARALLEL`) that need the same token
wait for one fetch instead of each signing and posting their own.

The cache lives in the sender, not in the playbook's frozen `DestinationConfig`: a playbook
reload re-parses destinations but the same account and scope keep their token.
"""

from __future__ import annotations

import threading

import httpx2

from leadloop.conversions.decide import Reject, Retry
from leadloop.conversions.google_credentials import (
    ServiceAccount,
    ServiceAccountError,
    Token,
    read_token_answer,
    token_request,
)

_Key = tuple[str, str, str, str]


class AccessTokens:
    def __init__(self, client: httpx2.Client) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._tokens: dict[_Key, Token] = {}
        self._fetching: dict[_Key, threading.Lock] = {}
        self.fetches = 0
        """Token requests sent so far (for tests and the curious)."""

    def get(
        self, account: ServiceAccount, scope: str, now: float, *, platform: str
    ) -> str | Retry | Reject:
        """A bearer token valid at `now`, from the cache or a new grant; else what the
        delivery should do (`Retry` after a network error or a 5xx, `Reject` when refused)."""
        key = account.cache_key(scope)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and now < cached.refresh_at:
                return cached.value
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            with self._lock:  # another thread may have fetched it while this one waited
                cached = self._tokens.get(key)
                if cached is not None and now < cached.refresh_at:
                    return cached.value
            answer = self._fetch(account, scope, now, platform)
            if isinstance(answer, Token):
                with self._lock:
                    self._tokens[key] = answer
                return answer.value
            return answer

    def forget(self, account: ServiceAccount, scope: str, token: str) -> None:
        """Drop `token` (the API refused it with a 401) so the next `get` fetches a new one;
        a newer token another thread already fetched is kept."""
        key = account.cache_key(scope)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.value == token:
                del self._tokens[key]

    def _fetch(
        self, account: ServiceAccount, scope: str, now: float, platform: str
    ) -> Token | Retry | Reject:
        where = f"{platform}: service account {account.client_email}: token endpoint"
        try:
            form = token_request(account, scope, now)
        except (ServiceAccountError, ValueError, TypeError) as exc:
            return Reject(reason=f"{where}: cannot sign the assertion: {exc.__class__.__name__}")
        with self._lock:
            self.fetches += 1
        try:
            response = self._client.post(
                account.token_uri,
                data=form,
                headers={"user-agent": "leadloop-conversions/0.1"},
            )
        except httpx2.HTTPError as exc:
            return Retry(reason=f"{where}: network error: {exc.__class__.__name__}: {exc}")
        return read_token_answer(
            account,
            response.status_code,
            dict(response.headers),
            response.content,
            now,
            platform=platform,
        )
