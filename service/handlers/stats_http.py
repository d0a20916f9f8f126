"""``/api/log/stat``, ``/api/log/series`` and ``/api/log/performance``: one handler each,
registered for the admin and self audiences."""

from __future__ import annotations

from aiohttp import web

from ..keys import CLOCK, SETTINGS, STORE
from ..performance import performance
from ..routeparams import PERFORMANCE, SERIES, STAT
from ..stats import GROUP_KEYS_ADMIN, GROUP_KEYS_USER, SeriesRequest, self_stat, series, stat
from ..web import ok
from . import Audience, principal, scoped_params


def _keys(admin: bool) -> dict[str, str]:
    """The group_by allowlist of an audience (its value -> the column)."""
    return GROUP_KEYS_ADMIN if admin else GROUP_KEYS_USER


async def stat_logs(request: web.Request, audience: Audience) -> web.Response:
    """The range's figures; a user's also with their all-time and today figures."""
    who = await principal(request, audience.role)
    args = scoped_params(request, STAT, audience, who)
    store, now = request.app[STORE], request.app[CLOCK]()
    if audience.admin:
        return ok(await stat(store, args.filter, now))
    return ok(await self_stat(store, args.filter, who.user_id, now, args["tz"]))


async def series_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    args = scoped_params(request, SERIES, audience, who)
    flt = args.filter
    assert flt.start is not None and flt.end is not None  # the table fills the range
    wanted = SeriesRequest(flt.start, flt.end, args["interval"], args["group_by"], args["tz"])
    limit = request.app[SETTINGS].max_series_buckets
    return ok(await series(request.app[STORE], flt, wanted, _keys(audience.admin), limit))


async def performance_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    args = scoped_params(request, PERFORMANCE, audience, who)
    group_by, keys = args["group_by"], _keys(audience.admin)
    return ok(await performance(request.app[STORE], args.filter, group_by, keys))
