"""HTTP handlers, one module per resource: parse and validate, call one query function,
shape the response. A resource that administrators and users both read has one handler
taking the :class:`Audience`; the route table registers it once per audience
(:func:`for_audience`).

A handler module serving a domain module of the same name carries the suffix ``_http``
(``stats_http`` answers the routes of ``service.stats``), so that no two modules of the
service share a name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from ..auth import ROLE_ADMIN, ROLE_USER, Principal
from ..columns import ADMIN_FIELDS, USER_FIELDS
from ..errors import Unauthorized
from ..gate import CALLER
from ..keys import AUTH, CLOCK, GATEWAY, SETTINGS
from ..params import Args, ByAudience, ParamTable

R = TypeVar("R", bound=web.StreamResponse)


@dataclass(frozen=True)
class Audience:
    """Whom a route answers: administrators (every log, with the admin-only fields and
    filters) or a signed-in user (their own logs only, in the user view)."""

    name: str
    role: int
    admin: bool
    fields: tuple[str, ...]

    @property
    def user_view(self) -> bool:
        return not self.admin


ADMIN = Audience("admin", ROLE_ADMIN, True, ADMIN_FIELDS)
SELF = Audience("self", ROLE_USER, False, USER_FIELDS)


def for_audience(
    handler: Callable[[web.Request, Audience], Awaitable[R]], audience: Audience
) -> Callable[[web.Request], Awaitable[R]]:
    """``handler`` as the route handler of one audience."""

    async def answer(request: web.Request) -> R:
        return await handler(request, audience)

    answer.__name__ = answer.__qualname__ = f"{handler.__name__}_{audience.name}"
    return answer


def read_params(request: web.Request, table: ParamTable, user_id: int | None = None) -> Args:
    """The request's query parameters as the route's ``table`` reads them (400 naming the
    first one that does not parse); ``user_id`` scopes the filter to one user's logs."""
    return table.parse(
        request.query,
        request.app[SETTINGS],
        clock=request.app[CLOCK],
        authorization=request.headers.get("Authorization", ""),
        user_id=user_id,
    )


def scoped_params(
    request: web.Request, resource: ByAudience, audience: Audience, who: Principal
) -> Args:
    """The request's parameters as ``audience`` may use them: a user's filter on their
    own logs."""
    table = resource.of(audience.admin)
    return read_params(request, table, None if audience.admin else who.user_id)


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
