"""Operations: liveness and readiness probes, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web

from ..errors import Unauthorized
from ..keys import CLOCK, METRICS, READY_CACHE, SETTINGS, STORE
from ..migrate import is_current
from ..openapi import document
from ..store import LANE
from ..web import dumps, fail, ok


async def healthz(request: web.Request) -> web.Response:
    return ok("ok")


async def _probe(request: web.Request) -> str | None:
    """None when ready, else why not (one engine round trip or two)."""
    # The probe asks the engine itself, past the gate and on its own thread: a busy
    # service is still ready (service/gate.py).
    store = request.app[STORE]
    store = getattr(store, "inner", store)
    LANE.set("probe")
    if not await store.ping():
        return "the log engine is unreachable"
    if not await is_current(store):
        return "the schema is not applied yet"
    return None


async def readyz(request: web.Request) -> web.Response:
    """Ready when the engine answers and the schema is current. The outcome is reused
    for GATELOG_READYZ_CACHE_SECONDS and concurrent probes share one engine call, so
    anonymous probes cannot load the engine."""
    app = request.app
    cache = app[READY_CACHE]
    now = app[CLOCK]()
    ttl = app[SETTINGS].readyz_cache_seconds
    if "at" in cache and now - float(cache["at"]) < ttl:  # type: ignore[arg-type]
        reason = cache["reason"]
    else:
        pending = cache.get("pending")
        if not isinstance(pending, asyncio.Future) or pending.done():
            pending = asyncio.ensure_future(_probe(request))
            cache["pending"] = pending
        reason = await asyncio.shield(pending)
        cache.update(at=app[CLOCK](), reason=reason)
    if reason is not None:
        return fail(503, str(reason))
    return ok("ready")


def _metrics_allowed(request: web.Request) -> bool:
    """With GATELOG_METRICS_TOKEN set, only ``Authorization: Bearer <token>`` (compared
    in constant time) reads /metrics: its figures tell the business volume."""
    token = request.app[SETTINGS].metrics_token
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8", "surrogateescape"), token.encode()
    )


async def metrics(request: web.Request) -> web.Response:
    if not _metrics_allowed(request):
        raise Unauthorized("metrics need Authorization: Bearer <GATELOG_METRICS_TOKEN>")
    body, content_type = request.app[METRICS].render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[SETTINGS]), dumps=dumps)
