"""Delegated sign-in: callers the gateway (new-api) signed in, recognised by asking it.

With ``GATELOG_GATEWAY_URL`` set, a request whose credentials are not a valid gatelog JWT
is checked with ``GET {url}/api/user/self`` carrying only the caller's ``Cookie``,
``Authorization`` and ``New-Api-User`` headers. That one call works for both of the
gateway's sign-in schemes (the legacy session cookie / access token with
``New-Api-User``, and the newer short-lived JWT checked against its session table),
because the gateway decides. ``success: true`` gives the user; anything else is a 401.
A gateway that cannot be reached, is too slow or answers 5xx is a 503 (never cached).

Answers are cached for ``GATELOG_GATEWAY_AUTH_TTL_SECONDS``, refusals for a shorter
time, keyed by a SHA-256 of the three headers (the credentials themselves are neither
stored nor logged), in a bounded LRU; concurrent requests with the same credentials
share one gateway call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import aiohttp

from .auth import Principal
from .errors import ApiError, Unauthorized

log = logging.getLogger(__name__)

#: the headers forwarded to the gateway, and nothing else
FORWARDED = ("Cookie", "Authorization", "New-Api-User")
USER_STATUS_ENABLED = 1
MAX_HEADER_CHARS = 16384


class GatewayUnavailable(ApiError):
    """The gateway could not say who the caller is (down, slow, or failing)."""

    status = 503


@dataclass
class _Entry:
    expires: float
    principal: Principal | None  # None: refused
    message: str


def credentials_of(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's forwarded headers that are present."""
    return {name: headers[name] for name in FORWARDED if headers.get(name)}


def cache_key(credentials: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in FORWARDED:
        value = credentials.get(name, "")
        digest.update(f"{len(value)}:".encode())
        digest.update(value.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class GatewayAuth:
    def __init__(
        self,
        url: str,
        *,
        ttl: float = 10.0,
        negative_ttl: float = 2.0,
        timeout: float = 3.0,
        max_entries: int = 10_000,
        clock: Callable[[], float],
    ) -> None:
        self.url = url.rstrip("/") + "/api/user/self"
        self.ttl = ttl
        self.negative_ttl = min(negative_ttl, ttl)
        self.timeout = timeout
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._session: aiohttp.ClientSession | None = None
        #: gateway calls made (for /metrics and tests)
        self.calls = 0

    def __len__(self) -> int:
        return len(self._cache)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        credentials = credentials_of(headers)
        if not credentials:
            raise Unauthorized("not signed in: no credentials (gatelog JWT or gateway sign-in)")
        if any(len(value) > MAX_HEADER_CHARS for value in credentials.values()):
            raise Unauthorized("credentials too long")
        key = cache_key(credentials)
        entry = self._cached(key)
        if entry is None:
            call = self._inflight.get(key)
            if call is None:
                # One task per credentials: a caller that goes away does not cancel the
                # call the others wait for.
                call = asyncio.ensure_future(self._ask_and_store(key, credentials))
                self._inflight[key] = call
            entry = await asyncio.shield(call)
        if entry.principal is None:
            raise Unauthorized(entry.message)
        return entry.principal

    async def _ask_and_store(self, key: str, credentials: Mapping[str, str]) -> _Entry:
        try:
            entry = await self._ask(credentials)
            self._store(key, entry)
            return entry
        finally:
            del self._inflight[key]

    def _cached(self, key: str) -> _Entry | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return entry

    def _store(self, key: str, entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # No cookie jar: one caller's cookies must never reach another's call.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

    async def _ask(self, credentials: Mapping[str, str]) -> _Entry:
        self.calls += 1
        headers = dict(credentials)
        headers["Accept"] = "application/json"
        try:
            async with self._client().get(
                self.url, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except (ValueError, UnicodeDecodeError):
                    body = None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("gateway sign-in check failed: %s", type(exc).__name__)
            raise GatewayUnavailable(
                "the gateway cannot be reached to check the sign-in; retry later"
            ) from None
        if status >= 500:
            log.warning("gateway sign-in check answered HTTP %d", status)
            raise GatewayUnavailable("the gateway failed to check the sign-in; retry later")
        return self._entry(status, body)

    def _entry(self, status: int, body: object) -> _Entry:
        refused = _Entry(self._clock() + self.negative_ttl, None, "not signed in at the gateway")
        if not (200 <= status < 300) or not isinstance(body, dict):
            return refused
        if body.get("success") is not True or not isinstance(body.get("data"), dict):
            message = body.get("message")
            if isinstance(message, str) and message:
                refused.message = f"not signed in at the gateway: {message[:200]}"
            return refused
        data = body["data"]
        user_id, role = data.get("id"), data.get("role")
        username, status_value = data.get("username", ""), data.get("status")
        if (
            isinstance(user_id, bool)
            or not isinstance(user_id, int)
            or not 0 <= user_id < 2**63
            or isinstance(role, bool)
            or not isinstance(role, int)
            or not isinstance(username, str)
        ):
            return refused
        if status_value is not None and status_value != USER_STATUS_ENABLED:
            refused.message = "the user is disabled at the gateway"
            return refused
        principal = Principal(user_id, username, role, frozenset())
        return _Entry(self._clock() + self.ttl, principal, "")
