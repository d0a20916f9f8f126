"""Operations: liveness and readiness probes, Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from ..keys import METRICS, SETTINGS, STORE
from ..migrate import is_current
from ..openapi import document
from ..web import dumps, fail, ok


async def healthz(request: web.Request) -> web.Response:
    return ok("ok")


async def readyz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    if not await store.ping():
        return fail(503, "the log engine is unreachable")
    if not await is_current(store):
        return fail(503, "the schema is not applied yet")
    return ok("ready")


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[SETTINGS]), dumps=dumps)
