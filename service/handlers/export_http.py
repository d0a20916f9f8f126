"""``/api/log/export`` (admin) and ``/api/log/self/export`` (user): streamed downloads,
one handler for both audiences."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

from aiohttp import web

from .. import export
from ..errors import ApiError
from ..keys import CLOCK, METRICS, SETTINGS, STORE
from ..params import LogFilter
from ..routeparams import EXPORT
from ..web import REQUEST_ID
from . import Audience, principal, scoped_params

log = logging.getLogger(__name__)


async def export_logs(request: web.Request, audience: Audience) -> web.StreamResponse:
    who = await principal(request, audience.role)
    args = scoped_params(request, EXPORT, audience, who)
    return await _export(request, args.filter, args["format"], audience)


async def _export(
    request: web.Request, flt: LogFilter, fmt: str, audience: Audience
) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    fields, user_view = audience.fields, audience.user_view
    blocks = export.export_blocks(
        request.app[STORE],
        flt,
        fields,
        user_view,
        settings.export_window_rows,
        settings.export_block_rows,
        settings.max_answer_bytes,
    )
    totals = export.ExportTotals()
    send_timeout = settings.send_timeout_seconds

    async def send(chunk: bytes) -> None:
        # A client that does not take a chunk within the send timeout is cut.
        await asyncio.wait_for(response.write(chunk), timeout=send_timeout)

    async with aclosing(blocks):
        # The first block is fetched before the response starts, so that a bad request
        # or an engine that is down is still answered with a status and the envelope.
        first = await anext(blocks, None)
        filename = f"logs-{int(request.app[CLOCK]())}.{fmt}"
        response = web.StreamResponse(
            headers={
                "Content-Type": export.FORMATS[fmt],
                "Content-Disposition": f'attachment; filename="{filename}"',
                "X-Request-Id": request[REQUEST_ID],
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        try:
            if fmt == "csv":
                await send(export.csv_header(fields))

            def encoded(items: Sequence[dict[str, Any]]) -> bytes:
                totals.add(items)
                return export.csv_rows(items, fields) if fmt == "csv" else export.ndjson_rows(items)

            pending = first
            while pending is not None:
                await send(await export.off_loop(request.app[STORE], encoded, pending))
                pending = await anext(blocks, None)
            await send(export.csv_totals(totals) if fmt == "csv" else export.ndjson_totals(totals))
        except TimeoutError:
            log.info("export: client too slow, cut after %d rows", totals.rows)
            metrics = request.app.get(METRICS)
            if metrics is not None:
                metrics.slow_client("send")
            if request.transport is not None:
                request.transport.abort()
            return response
        except ConnectionResetError:
            log.info("export: the client went away after %d rows", totals.rows)
            return response
        except Exception as exc:
            message = exc.message if isinstance(exc, ApiError) else "internal error"
            message += f" (request {request[REQUEST_ID]}); the export is incomplete"
            log.exception("export failed after %d rows", totals.rows)
            line = export.csv_error(message) if fmt == "csv" else export.ndjson_error(message)
            try:
                await send(line)
            except (ConnectionResetError, TimeoutError):
                return response
    await response.write_eof()
    return response
