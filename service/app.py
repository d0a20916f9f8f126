"""The app factory: wires settings, routes and middleware; all I/O lives in cleanup
contexts (open the engine and migrate; background jobs), so building an app is pure."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .auth import Authenticator
from .deletion import DeleteGuard
from .errors import EngineUnavailable
from .ingest import IdGenerator
from .keys import AUTH, CLOCK, DELETE_GUARD, IDS, SETTINGS, STORE, TOKEN_LIMITER
from .migrate import migrate
from .ratelimit import RateLimiter
from .retention import retention_loop
from .routes import setup_routes
from .settings import Settings
from .store import Store, open_store
from .web import error_middleware

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    store: Store | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """``store`` lets tests hand in an engine they opened; else one is opened on start.
    ``clock`` (Unix seconds, default the wall clock) is what "now" means to stats,
    history deletes and retention; tests hand in a fixed one."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[AUTH] = Authenticator(settings)
    app[TOKEN_LIMITER] = RateLimiter(settings.token_lookup_rate)
    app[IDS] = IdGenerator(settings.node_id)
    app[CLOCK] = clock or time.time
    app[DELETE_GUARD] = DeleteGuard()
    app.cleanup_ctx.append(_engine(store))
    if settings.retention_days:
        app.cleanup_ctx.append(_retention)
    setup_routes(app)
    return app


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Drops days older than the retention now and then every interval (background)."""
    task = asyncio.create_task(
        retention_loop(app[STORE], app[SETTINGS], app[DELETE_GUARD], app[CLOCK])
    )
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _engine(given: Store | None):  # type: ignore[no-untyped-def]
    async def engine(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        store = given if given is not None else open_store(settings)
        app[STORE] = store
        retry: asyncio.Task[None] | None = None
        try:
            await migrate(store, cluster=settings.clickhouse_cluster)
        except EngineUnavailable:
            # A server that is down now must not keep the service from starting:
            # /readyz stays 503 until the schema is applied, retried in the background.
            log.warning("engine unavailable at start; retrying the schema in the background")
            retry = asyncio.create_task(_migrate_until_done(store, settings))
        except Exception:
            if given is None:
                await store.close()
            raise
        yield
        if retry is not None:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
        if given is None:
            await store.close()

    return engine


async def _migrate_until_done(store: Store, settings: Settings, pause: float = 2.0) -> None:
    while True:
        await asyncio.sleep(pause)
        try:
            await migrate(store, cluster=settings.clickhouse_cluster)
        except EngineUnavailable:
            continue
        log.info("engine reachable again; schema applied")
        return
