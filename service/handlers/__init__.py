"""HTTP handlers, one module per resource: parse and validate, call one query function,
shape the response."""

from __future__ import annotations

from aiohttp import web

from ..auth import Principal
from ..keys import AUTH


def principal(request: web.Request, role: int) -> Principal:
    """The caller, authenticated and holding at least ``role`` (401/403 otherwise)."""
    from ..auth import require_role

    who = request.app[AUTH].authenticate(request.headers.get("Authorization"))
    require_role(who, role)
    return who
