"""The service as ``python -m service serve`` runs it, plus one response header:
``Server-Timing: engine;dur=<ms>``, the wall time this request spent in engine calls.

The benchmark runs this instead of the bare command so that the service's overhead can
be read per request (client latency minus engine time, measured at the same moment),
rather than by comparing with engine timings taken at another moment on a busy machine.
Everything else (app, routes, auth, middleware, engine) is the service's own.

One route is the bench's own: ``POST /bench/baseline`` runs the statements in its body
(``{"statements": [...], "params": {...}}``: new-api's SQL for a case, on its table in
the same data directory) on the service's engine, side by side as new-api's code sends
them, and answers their engine time in the same header. The bench alternates it with the
service's requests, so both designs are timed at the same moments of a busy machine
(the machine's load moves by several times within a run). It exists only in this
bench wrapper, which listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.app import create_app
from service.settings import Settings
from service.store import Store, open_store

_spans: contextvars.ContextVar[list[tuple[float, float]] | None] = contextvars.ContextVar(
    "engine_spans", default=None
)


def _observe(kind: str, seconds: float) -> None:
    spans = _spans.get()
    if spans is not None:  # inside a request (gathered queries share the list)
        now = time.perf_counter()
        spans.append((now - seconds, now))


def union_ms(spans: list[tuple[float, float]]) -> float:
    """Wall time covered by possibly overlapping calls (the count and the page of a list
    run side by side)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total * 1000


@web.middleware
async def engine_timing(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    spans: list[tuple[float, float]] = []
    _spans.set(spans)
    response = await handler(request)
    response.headers["Server-Timing"] = f"engine;dur={union_ms(spans):.3f}"
    return response


BENCH_STORE = web.AppKey("bench_store", Store)


async def baseline(request: web.Request) -> web.Response:
    """new-api's statements for one case, timed as the service's own engine calls are."""
    body = await request.json()
    store = request.app[BENCH_STORE]
    params = body.get("params", {})
    await asyncio.gather(*(store.query(sql, params) for sql in body["statements"]))
    return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings.from_env()
    settings.check_auth()
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.INFO))
    store = open_store(settings)
    store.observer = _observe
    app = create_app(settings, store=store)
    app.middlewares.append(engine_timing)
    app[BENCH_STORE] = store
    app.router.add_post("/bench/baseline", baseline)

    async def close(app: web.Application) -> None:
        await store.close()

    app.on_cleanup.append(close)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
