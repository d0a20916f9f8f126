"""The app factory: wires settings, routes and middleware; all I/O lives in cleanup
contexts (open the engine and migrate; background jobs), so building an app is pure."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from .auth import Authenticator
from .deletion import DeleteGuard
from .errors import EngineUnavailable
from .gate import Gate, GatedStore
from .gateway_auth import GatewayAuth
from .headers import install_parser_errors, on_prepare
from .ids import NodeIds
from .keys import (
    AUTH,
    CLOCK,
    DELETE_GUARD,
    GATEWAY,
    IDS,
    METRICS,
    READY_CACHE,
    SETTINGS,
    STARTED,
    STORE,
    TOKEN_LIMITER,
)
from .metrics import Metrics
from .migrate import migrate
from .ratelimit import RateLimiter, parse_networks
from .retention import retention_loop
from .routes import setup_routes
from .settings import Settings
from .store import LANE, Store, open_store
from .web import error_middleware, stamp_request_id

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    store: Store | None = None,
    clock: Callable[[], float] | None = None,
) -> web.Application:
    """``store`` lets tests hand in an engine they opened; else one is opened on start.
    ``clock`` (Unix seconds, default the wall clock) is what "now" means to stats,
    history deletes, retention and the token lookup's rate windows; tests hand in a
    fixed one."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=settings.max_body_bytes,
        # Long query strings reach our own validation (a 400 in the envelope naming the
        # parameter) instead of the HTTP parser's bare 400; past 64 KiB the parser refuses.
        handler_args={"max_line_size": 65536, "max_field_size": 16384},
    )
    app[SETTINGS] = settings
    app[AUTH] = Authenticator(settings)
    app[TOKEN_LIMITER] = RateLimiter(
        settings.token_lookup_rate,
        # a fixed clock in tests: a burst never straddles two of its minute windows
        clock=clock or time.monotonic,
        trusted=parse_networks(settings.trusted_proxies),
    )
    app[IDS] = NodeIds(lambda: app[STORE])
    app[CLOCK] = clock or time.time
    settings.check_gateway()
    settings.check_time_zone()
    settings.check_ingest_bounds()
    if settings.gateway_url:
        app[GATEWAY] = GatewayAuth(
            settings.gateway_url,
            ttl=settings.gateway_auth_ttl_seconds,
            negative_ttl=settings.gateway_auth_negative_ttl_seconds,
            timeout=settings.gateway_timeout_seconds,
            max_entries=settings.gateway_auth_cache_size,
            clock=app[CLOCK],
        )
        app.on_cleanup.append(_close_gateway)
    app[DELETE_GUARD] = DeleteGuard()
    app[METRICS] = Metrics()
    app[READY_CACHE] = {}
    app.on_response_prepare.append(stamp_request_id)
    app.on_response_prepare.append(on_prepare)
    install_parser_errors()
    app.on_shutdown.append(_draining)
    app.cleanup_ctx.append(_engine(store))
    if settings.retention_days:
        app.cleanup_ctx.append(_retention)
    if settings.follow_from:
        app.cleanup_ctx.append(_follow(settings.follow_from))
    app[STARTED] = {"done": False}
    app.on_startup.append(_started)  # after the cleanup contexts' start
    setup_routes(app)
    return app


def _follow(url: str):  # type: ignore[no-untyped-def]
    """``GATELOG_FOLLOW_FROM``: keep importing the gateway's database in the background."""
    from .importer import SourceError, parse_source
    from .settings import SettingsError

    try:
        source = parse_source(url)
    except SourceError as exc:
        raise SettingsError(f"GATELOG_FOLLOW_FROM: {exc}") from None

    async def follow(app: web.Application) -> AsyncIterator[None]:
        from .follow import Follower

        follower = Follower(
            app[STORE],
            source,
            interval=app[SETTINGS].follow_interval_seconds,
            token_interval=app[SETTINGS].follow_tokens_interval_seconds,
            clock=app[CLOCK],
            registry=app[METRICS].registry,
        )
        lane = contextvars.copy_context()  # the follower writes: the ingest lane
        lane.run(LANE.set, "write")
        task = asyncio.create_task(follower.run(), context=lane)
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return follow


async def _close_gateway(app: web.Application) -> None:
    await app[GATEWAY].close()


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """Drops days older than the retention now and then every interval (background)."""
    metrics = app[METRICS]
    task = asyncio.create_task(
        retention_loop(
            app[STORE],
            app[SETTINGS],
            app[DELETE_GUARD],
            app[CLOCK],
            lambda rows: metrics.rows_deleted(rows, source="retention"),
        )
    )
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _started(app: web.Application) -> None:
    app[STARTED]["done"] = True


async def _draining(app: web.Application) -> None:
    if not app[STARTED]["done"]:
        return  # start-up failed: nothing was served, the failure says what went wrong
    # On SIGTERM aiohttp stops accepting connections, calls this, waits for in-flight
    # requests (up to the shutdown timeout), then runs the cleanup contexts.
    busy = app[METRICS].registry.get_sample_value("gatelog_http_requests_in_flight") or 0
    log.info("stopping: finishing %d in-flight requests", int(busy))


def _engine(given: Store | None):  # type: ignore[no-untyped-def]
    async def engine(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        store = given if given is not None else open_store(settings)
        # Handlers and jobs see the engine through the gate (slots, lanes, bounds);
        # the schema is applied on the store itself.
        app[STORE] = GatedStore(store, Gate(settings, app[METRICS]))
        observe = app[METRICS].observe_engine
        store.add_observer(observe)
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
        if retry is None:
            await _recover_rollups(store, app[DELETE_GUARD])
        yield
        await app[IDS].close()
        if retry is not None:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
        store.remove_observer(observe)
        if given is None:
            await store.close()
            log.info("engine closed")

    return engine


async def _recover_rollups(store: Store, guard: DeleteGuard) -> None:
    """Days a delete or repair left mid-way (its marker still open) are repaired before
    the service answers (service/rollup.py)."""
    from .rollup import recover

    try:
        closed = await recover(store, guard)
    except Exception:
        log.exception("could not check the rollups left by an unfinished delete or repair")
        return
    if closed:
        log.info("repaired the days of %d unfinished deletes or repairs", closed)


async def _migrate_until_done(store: Store, settings: Settings, pause: float = 2.0) -> None:
    while True:
        await asyncio.sleep(pause)
        try:
            await migrate(store, cluster=settings.clickhouse_cluster)
        except EngineUnavailable:
            continue
        log.info("engine reachable again; schema applied")
        return
