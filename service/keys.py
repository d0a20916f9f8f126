"""Typed application state: every ``web.AppKey`` the service uses, in one place."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .auth import Authenticator
from .deletion import DeleteGuard
from .gateway_auth import GatewayAuth
from .ids import NodeIds
from .metrics import Metrics
from .ratelimit import RateLimiter
from .settings import Settings
from .store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Authenticator)
TOKEN_LIMITER = web.AppKey("token_limiter", RateLimiter)
#: the node leased for the ids this process assigns (service/ids.py)
IDS = web.AppKey("ids", NodeIds)
READY = web.AppKey("ready", dict)
#: start-up completed (a failed start has no in-flight requests to report on stopping)
STARTED: web.AppKey[dict[str, bool]] = web.AppKey("started", dict)
#: the wall clock (Unix seconds); tests hand in a fixed one through create_app(clock=...)
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
#: orders history deletes and retention against the ingest of older logs
DELETE_GUARD = web.AppKey("delete_guard", DeleteGuard)
METRICS = web.AppKey("metrics", Metrics)
#: delegated sign-in through the gateway; absent without GATELOG_GATEWAY_URL
GATEWAY = web.AppKey("gateway", GatewayAuth)
#: /readyz's last outcome and its probe in flight (see handlers/ops.readyz)
READY_CACHE: web.AppKey[dict[str, object]] = web.AppKey("ready_cache", dict)
