"""Typed application state: every ``web.AppKey`` the service uses, in one place."""

from __future__ import annotations

from aiohttp import web

from .auth import Authenticator
from .metrics import Metrics
from .ratelimit import RateLimiter
from .settings import Settings
from .store import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
AUTH = web.AppKey("auth", Authenticator)
TOKEN_LIMITER = web.AppKey("token_limiter", RateLimiter)
IDS = web.AppKey("ids", object)
READY = web.AppKey("ready", dict)
METRICS = web.AppKey("metrics", Metrics)
