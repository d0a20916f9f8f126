"""``DELETE /api/log/?target_timestamp=`` (admin): delete the history before a time."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..auth import ROLE_ADMIN
from ..deletion import delete_before
from ..errors import BadRequest
from ..keys import CLOCK, DELETE_GUARD, METRICS, SETTINGS, STORE
from ..params import MAX_TIMESTAMP, get_raw
from ..web import ok
from . import principal

TARGET_REQUIRED = "target timestamp is required"


def _target(request: web.Request) -> int:
    raw = (get_raw(request.query, "target_timestamp") or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(TARGET_REQUIRED)
    # Any number of digits is a time; past MAX_TIMESTAMP it is as much in the future.
    target = int(raw) if len(raw) <= 10 else MAX_TIMESTAMP + 1
    if target == 0:
        raise BadRequest(TARGET_REQUIRED)
    if target > request.app[CLOCK]():
        raise BadRequest("invalid parameter 'target_timestamp': must not be in the future")
    return target


async def delete_history(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    target = _target(request)
    settings = request.app[SETTINGS]
    # Shielded: a client that hangs up must not stop the delete between its statements.
    result = await asyncio.shield(
        delete_before(
            request.app[STORE],
            target,
            request.app[DELETE_GUARD],
            settings.delete_partitions_per_statement,
        )
    )
    request.app[METRICS].rows_deleted(result.deleted)
    return ok(result.deleted)
