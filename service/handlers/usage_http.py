"""``/api/data/`` (admin) and ``/api/data/self`` (user): the gateway dashboard's hourly
usage rows per model, as new-api answers them (spec/newapi-compat.md)."""

from __future__ import annotations

from aiohttp import web

from ..keys import CLOCK, SETTINGS, STORE
from ..params import FILTER, check_range, filled_range, get_str
from ..usage import check_self_span, get_tz, usage_rows
from ..web import ok
from . import Audience, principal


def _range(request: web.Request) -> tuple[int, int]:
    # `default_time` is sent by the gateway's UI and ignored, as the gateway does; 0 is
    # "not given", as on every other endpoint (new-api's UI always sends both ends)
    end = FILTER["end_timestamp"].number(request.query)
    start = FILTER["start_timestamp"].number(request.query)
    check_range(start, end)
    return filled_range(start, end, request.app[CLOCK]())


async def usage_data(request: web.Request, audience: Audience) -> web.Response:
    """Every user's rows (optionally one ``username``'s) for admins; a user's own, over
    at most ``SELF_MAX_SPAN``, for a user."""
    who = await principal(request, audience.role)
    settings = request.app[SETTINGS]
    start, end = _range(request)
    if audience.user_view:
        check_self_span(start, end)
    tz = get_tz(request.query, settings.time_zone)
    if audience.admin:
        username = get_str(request.query, "username", settings)
        rows = await usage_rows(request.app[STORE], start, end, tz, username=username)
    else:
        rows = await usage_rows(request.app[STORE], start, end, tz, user_id=who.user_id)
    return ok(rows)
