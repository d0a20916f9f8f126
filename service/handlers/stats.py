"""``/api/log/stat``, ``/api/log/series`` and ``/api/log/performance``, admin and self views."""

from __future__ import annotations

from aiohttp import web

from ..auth import ROLE_ADMIN, ROLE_USER
from ..keys import CLOCK, SETTINGS, STORE
from ..params import LogFilter, get_choice, parse_filter
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
from . import principal

#: a series without start_timestamp covers the day before its end
DEFAULT_SPAN = 86400


async def stat_all(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    flt = parse_filter(request.query, request.app[SETTINGS], admin=True)
    return ok(await stat(request.app[STORE], flt, request.app[CLOCK]()))


async def stat_self(request: web.Request) -> web.Response:
    who = await principal(request, ROLE_USER)
    settings = request.app[SETTINGS]
    flt = parse_filter(request.query, settings, admin=False)
    flt.user_id = who.user_id
    tz = get_tz(request.query, settings.time_zone)
    store, now = request.app[STORE], request.app[CLOCK]()
    return ok(await self_stat(store, flt, who.user_id, now, tz))


def _series_request(request: web.Request, flt: LogFilter, admin: bool) -> SeriesRequest:
    settings = request.app[SETTINGS]
    end = flt.end
    if end is None:  # now, or the start if a later one is asked for
        end = max(int(request.app[CLOCK]()), flt.start or 0)
    start = flt.start if flt.start is not None else max(0, end - DEFAULT_SPAN)
    interval = get_choice(request.query, "interval", INTERVALS, settings, DEFAULT_INTERVAL)
    assert interval is not None
    group_by = _group_by(request, admin)
    flt.start, flt.end = start, end
    tz = get_tz(request.query, settings.time_zone)
    return SeriesRequest(start, end, interval, group_by, tz)


async def series_all(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    settings = request.app[SETTINGS]
    flt = parse_filter(request.query, settings, admin=True)
    wanted = _series_request(request, flt, admin=True)
    data = await series(
        request.app[STORE], flt, wanted, GROUP_KEYS_ADMIN, settings.max_series_buckets
    )
    return ok(data)


async def series_self(request: web.Request) -> web.Response:
    who = await principal(request, ROLE_USER)
    settings = request.app[SETTINGS]
    flt = parse_filter(request.query, settings, admin=False)
    flt.user_id = who.user_id
    wanted = _series_request(request, flt, admin=False)
    data = await series(
        request.app[STORE], flt, wanted, GROUP_KEYS_USER, settings.max_series_buckets
    )
    return ok(data)


def _group_by(request: web.Request, admin: bool) -> str | None:
    keys = GROUP_KEYS_ADMIN if admin else GROUP_KEYS_USER
    return get_choice(request.query, "group_by", keys, request.app[SETTINGS])


async def performance_all(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    flt = parse_filter(request.query, request.app[SETTINGS], admin=True)
    group_by = _group_by(request, admin=True)
    return ok(await performance(request.app[STORE], flt, group_by, GROUP_KEYS_ADMIN))


async def performance_self(request: web.Request) -> web.Response:
    who = await principal(request, ROLE_USER)
    flt = parse_filter(request.query, request.app[SETTINGS], admin=False)
    flt.user_id = who.user_id
    group_by = _group_by(request, admin=False)
    return ok(await performance(request.app[STORE], flt, group_by, GROUP_KEYS_USER))
