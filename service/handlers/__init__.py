"""HTTP handlers, one module per resource: parse and validate, call one query function,
shape the response."""

from __future__ import annotations

from aiohttp import web

from ..auth import Principal
from ..errors import Unauthorized
from ..gate import CALLER
from ..keys import AUTH, GATEWAY


async def principal(request: web.Request, role: int) -> Principal:
    """The caller, authenticated and holding at least ``role`` (401/403 otherwise).

    A valid gatelog JWT decides alone; without one, and with ``GATELOG_GATEWAY_URL``
    set, the gateway is asked whether the caller's own credentials sign them in."""
    from ..auth import require_role

    try:
        who = request.app[AUTH].authenticate(request.headers.get("Authorization"))
    except Unauthorized:
        gateway = request.app.get(GATEWAY)
        if gateway is None:
            raise
        who = await gateway.authenticate(request.headers)
    require_role(who, role)
    CALLER.set(f"user:{who.user_id}")  # the engine share this request's work counts to
    return who
