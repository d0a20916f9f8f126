"""``POST /api/internal/logs`` and ``/api/internal/tokens`` (scope ``logs:write``)."""

from __future__ import annotations

import pyarrow.compute as pc
from aiohttp import web

from ..auth import SCOPE_WRITE, require_scope
from ..errors import Unauthorized
from ..ingest import (
    TOKEN_FIELDS,
    batch_token,
    check_log_days,
    check_token_keys,
    log_fields_for,
    parse_body,
    parse_logs,
    store_log_table,
    store_tokens,
    validate,
)
from ..keys import AUTH, DELETE_GUARD, IDS, METRICS, SETTINGS, STORE
from ..rollup import wait_for_markers
from ..store import LANE, ChdbStore
from ..tokenhash import hash_key
from ..web import ok


def _writer(request: web.Request) -> None:
    who = request.app[AUTH].authenticate(request.headers.get("Authorization"))
    if who is None:  # pragma: no cover - authenticate raises instead
        raise Unauthorized("missing credentials")
    require_scope(who, SCOPE_WRITE)
    LANE.set("write")  # this request's engine work goes in the ingest lane (service/gate.py)


async def ingest_logs(request: web.Request) -> web.Response:
    _writer(request)
    body = await request.read()
    settings = request.app[SETTINGS]
    table = parse_logs(
        body, request.content_type, log_fields_for(settings), settings.max_batch_rows
    )
    check_log_days(table, settings.ingest_max_days_per_batch)
    ids = request.app[IDS]
    # A batch holding logs older than a running history delete's target waits for it,
    # so the delete's count and the rollup stay exact (service/deletion.py).
    oldest = int(pc.min(table["created_at"]).as_py())
    newest = int(pc.max(table["created_at"]).as_py())
    store = request.app[STORE]
    if not isinstance(getattr(store, "inner", store), ChdbStore):
        # Another process may be deleting or repairing these days on the same server:
        # wait for its marker (service/rollup.py). The embedded engine has one process.
        await wait_for_markers(store, oldest, newest)
    async with request.app[DELETE_GUARD].admit(oldest, newest):
        stored = await store_log_table(store, table, batch_token(body, "logs"), ids)
    request.app[METRICS].rows_ingested("logs", stored)
    return ok(stored)


async def ingest_tokens(request: web.Request) -> web.Response:
    _writer(request)
    body = await request.read()
    settings = request.app[SETTINGS]
    rows = validate(parse_body(body, request.content_type), TOKEN_FIELDS, settings.max_batch_rows)
    check_token_keys(rows, settings.ingest_min_token_key_chars)
    stored = await store_tokens(request.app[STORE], rows, hash_key)
    request.app[METRICS].rows_ingested("tokens", stored)
    return ok(stored)
