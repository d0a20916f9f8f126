"""``/api/data/`` (admin) and ``/api/data/self`` (user): the gateway dashboard's hourly
usage rows per model, as new-api answers them (spec/newapi-compat.md)."""

from __future__ import annotations

from aiohttp import web

from ..keys import STORE
from ..routeparams import USAGE
from ..usage import usage_rows
from ..web import ok
from . import Audience, principal, scoped_params


async def usage_data(request: web.Request, audience: Audience) -> web.Response:
    """Every user's rows (optionally one ``username``'s) for admins; a user's own, over
    at most ``SELF_MAX_SPAN``, for a user (the route's table: ``routeparams.USAGE``)."""
    who = await principal(request, audience.role)
    args = scoped_params(request, USAGE, audience, who)
    start, end, tz = args.filter.start, args.filter.end, args["tz"]
    assert start is not None and end is not None  # the table fills the range
    if audience.admin:
        rows = await usage_rows(request.app[STORE], start, end, tz, username=args["username"])
    else:
        rows = await usage_rows(request.app[STORE], start, end, tz, user_id=who.user_id)
    return ok(rows)
