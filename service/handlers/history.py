"""``DELETE /api/log/?target_timestamp=`` (admin): delete the history before a time."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..auth import ROLE_ADMIN
from ..deletion import DeleteResult, delete_before, delete_from
from ..keys import CLOCK, DELETE_GUARD, METRICS, SETTINGS, STORE
from ..rollup import FIRST_DAY, LAST_DAY, day_of, marked
from ..routeparams import DELETE
from ..web import ok
from . import principal, read_params


async def delete_history(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    target = read_params(request, DELETE)["target_timestamp"]
    settings = request.app[SETTINGS]
    store, guard = request.app[STORE], request.app[DELETE_GUARD]

    async def run() -> DeleteResult:
        # A marker over the days it touches (service/rollup.py): checked and repaired
        # after, or at the next start if this process dies midway.
        async with marked(store, "delete", FIRST_DAY, day_of(target - 1), guard):
            return await delete_before(
                store, target, guard, settings.delete_partitions_per_statement
            )

    # Shielded: a client that hangs up must not stop the delete between its statements.
    result = await asyncio.shield(run())
    request.app[METRICS].rows_deleted(result.deleted)
    return ok(result.deleted)


async def delete_future(request: web.Request) -> web.Response:
    """``DELETE /api/log/future`` (admin): remove every log dated later than ingest
    accepts now (now + GATELOG_INGEST_CLOCK_SKEW_SECONDS), such as rows of the year 2100
    stored before ingest bounded ``created_at``; answers how many were removed."""
    await principal(request, ROLE_ADMIN)
    settings = request.app[SETTINGS]
    cutoff = int(request.app[CLOCK]()) + settings.ingest_clock_skew_seconds + 1
    store, guard = request.app[STORE], request.app[DELETE_GUARD]

    async def run() -> DeleteResult:
        async with marked(store, "delete-future", day_of(cutoff), LAST_DAY, guard):
            return await delete_from(store, cutoff, guard, settings.delete_partitions_per_statement)

    result = await asyncio.shield(run())
    request.app[METRICS].rows_deleted(result.deleted, source="future")
    return ok(result.deleted)
