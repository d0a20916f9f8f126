"""``/api/log/stat``, ``/api/log/series`` and ``/api/log/performance``: one handler each,
registered for the admin and self audiences."""

from __future__ import annotations

from aiohttp import web

from ..keys import CLOCK, SETTINGS, STORE
from ..params import LogFilter, filled_range, get_choice
from ..performance import performance
from ..stats import (
    DEFAULT_INTERVAL,
    GROUP_KEYS_ADMIN,
    GROUP_KEYS_USER,
    INTERVALS,
    SeriesRequest,
    self_stat,
    series,
    stat,
)
from ..usage import get_tz
from ..web import ok
from . import Audience, principal, scoped_filter


def _keys(admin: bool) -> dict[str, str]:
    """The group_by allowlist of an audience."""
    return GROUP_KEYS_ADMIN if admin else GROUP_KEYS_USER


async def stat_logs(request: web.Request, audience: Audience) -> web.Response:
    """The range's figures; a user's also with their all-time and today figures."""
    who = await principal(request, audience.role)
    flt = scoped_filter(request, audience, who)
    if audience.admin:
        return ok(await stat(request.app[STORE], flt, request.app[CLOCK]()))
    tz = get_tz(request.query, request.app[SETTINGS].time_zone)
    store, now = request.app[STORE], request.app[CLOCK]()
    return ok(await self_stat(store, flt, who.user_id, now, tz))


def _series_request(request: web.Request, flt: LogFilter, admin: bool) -> SeriesRequest:
    settings = request.app[SETTINGS]
    start, end = filled_range(flt.start, flt.end, request.app[CLOCK]())
    interval = get_choice(request.query, "interval", INTERVALS, settings, DEFAULT_INTERVAL)
    assert interval is not None
    group_by = _group_by(request, admin)
    flt.start, flt.end = start, end
    tz = get_tz(request.query, settings.time_zone)
    return SeriesRequest(start, end, interval, group_by, tz)


async def series_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    flt = scoped_filter(request, audience, who)
    wanted = _series_request(request, flt, audience.admin)
    limit = request.app[SETTINGS].max_series_buckets
    return ok(await series(request.app[STORE], flt, wanted, _keys(audience.admin), limit))


def _group_by(request: web.Request, admin: bool) -> str | None:
    return get_choice(request.query, "group_by", _keys(admin), request.app[SETTINGS])


async def performance_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    flt = scoped_filter(request, audience, who)
    group_by = _group_by(request, audience.admin)
    return ok(await performance(request.app[STORE], flt, group_by, _keys(audience.admin)))
