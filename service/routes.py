"""The route table: every route the service answers, in one list."""

from __future__ import annotations

from aiohttp import web

from .handlers import dashboard, export, history, ingest, logs, ops, stats, usage
from .headers import TOKEN_PATH, preflight


def setup_routes(app: web.Application) -> None:
    app.add_routes(
        [
            web.get("/api/log/", logs.list_all),
            web.get("/api/log/self", logs.list_self),
            web.get("/api/log/search", logs.search_all),
            web.get("/api/log/self/search", logs.search_self),
            web.delete("/api/log/", history.delete_history),
            web.delete("/api/log/future", history.delete_future),
            web.get("/api/log/stat", stats.stat_all),
            web.get("/api/log/self/stat", stats.stat_self),
            web.get("/api/log/series", stats.series_all),
            web.get("/api/log/self/series", stats.series_self),
            web.get("/api/log/performance", stats.performance_all),
            web.get("/api/log/self/performance", stats.performance_self),
            web.get("/api/log/export", export.export_all),
            web.get("/api/log/self/export", export.export_self),
            web.get("/api/data/", usage.data_all),
            web.get("/api/data", usage.data_all),
            web.get("/api/data/self", usage.data_self),
            web.get("/api/data/self/", usage.data_self),
            web.post("/api/internal/logs", ingest.ingest_logs),
            web.post("/api/internal/tokens", ingest.ingest_tokens),
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
    app.router.add_get(TOKEN_PATH, logs.by_token)
    app.router.add_route("OPTIONS", TOKEN_PATH, preflight)
