"""The route table: every route the service answers, in one list."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .handlers import (
    ADMIN,
    SELF,
    Audience,
    dashboard,
    export_http,
    for_audience,
    history,
    ingest_http,
    logs_http,
    ops,
    stats_http,
    usage_http,
)
from .headers import TOKEN_PATH, preflight


def shared(
    handler: Callable[[web.Request, Audience], Awaitable[web.StreamResponse]],
    admin: tuple[str, ...],
    user: tuple[str, ...],
) -> list[web.RouteDef]:
    """GET routes of a resource both audiences read: its admin paths, then its users'."""
    return [
        web.get(path, for_audience(handler, audience))
        for paths, audience in ((admin, ADMIN), (user, SELF))
        for path in paths
    ]


def setup_routes(app: web.Application) -> None:
    app.add_routes(
        [
            *shared(logs_http.list_logs, ("/api/log/",), ("/api/log/self",)),
            *shared(logs_http.search_logs, ("/api/log/search",), ("/api/log/self/search",)),
            web.delete("/api/log/", history.delete_history),
            web.delete("/api/log/future", history.delete_future),
            *shared(stats_http.stat_logs, ("/api/log/stat",), ("/api/log/self/stat",)),
            *shared(stats_http.series_logs, ("/api/log/series",), ("/api/log/self/series",)),
            *shared(
                stats_http.performance_logs,
                ("/api/log/performance",),
                ("/api/log/self/performance",),
            ),
            *shared(export_http.export_logs, ("/api/log/export",), ("/api/log/self/export",)),
            *shared(
                usage_http.usage_data,
                ("/api/data/", "/api/data"),
                ("/api/data/self", "/api/data/self/"),
            ),
            web.post("/api/internal/logs", ingest_http.ingest_logs),
            web.post("/api/internal/tokens", ingest_http.ingest_tokens),
            web.get("/healthz", ops.healthz),
            web.get("/readyz", ops.readyz),
            web.get("/metrics", ops.metrics),
            web.get("/api/openapi.json", ops.openapi),
            web.get("/", dashboard.root),
            web.get("/dashboard", dashboard.root),
            web.get("/dashboard/", dashboard.page),
            web.get("/dashboard/assets/{name}", dashboard.asset),
        ]
    )
    # The public token lookup is the only cross-origin route (service.headers: CORS
    # headers on every answer of it, errors included, and its preflight).
    app.router.add_get(TOKEN_PATH, logs_http.by_token)
    app.router.add_route("OPTIONS", TOKEN_PATH, preflight)
