"""``/api/log/`` list and search (one handler each, registered for the admin and self
audiences), and the public token lookup."""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound, RateLimited
from ..gate import CALLER
from ..keys import SETTINGS, STORE, TOKEN_LIMITER
from ..logs import find_token, list_page, search, token_logs, with_channel
from ..ratelimit import client_ip
from ..routeparams import LIST, SEARCH, TOKEN_LOOKUP
from ..tokenhash import hash_key, key_length
from ..web import ok
from . import Audience, principal, read_params, scoped_params

TOKEN_NOT_FOUND = "Token does not exist or no permission"
TOKEN_STATUS_DISABLED = 2


async def list_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    args = scoped_params(request, LIST, audience, who)
    page, keyword = args.page, args.values.get("keyword")  # a user's list only: LIST
    store = request.app[STORE]
    items, total = await list_page(
        store, args.filter, page, audience.fields, audience.user_view, keyword=keyword
    )
    if audience.admin:
        with_channel(items)
    return ok({"items": items, "total": total, "page": page.page, "page_size": page.size})


async def search_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    args = scoped_params(request, SEARCH, audience, who)
    wanted = (args.filter, args["keyword"], args.page)
    items = await search(request.app[STORE], *wanted, audience.fields, audience.user_view)
    return ok(with_channel(items) if audience.admin else items)


async def by_token(request: web.Request) -> web.Response:
    """Public: the logs of the token whose key is given. Unknown and disabled keys get
    the same 404 after the same single lookup, so timing does not tell them apart."""
    limiter = request.app[TOKEN_LIMITER]
    ip = client_ip(request.remote, request.headers.get("X-Forwarded-For"), limiter.trusted)
    allowed, retry = limiter.allow(ip)
    if not allowed:
        error = RateLimited("too many token lookups from this address; retry later")
        error.headers = {"Retry-After": str(int(retry))}  # type: ignore[attr-defined]
        raise error
    args = read_params(request, TOKEN_LOOKUP)
    key = args["key"]
    if key_length(key) < request.app[SETTINGS].ingest_min_token_key_chars:
        raise NotFound(TOKEN_NOT_FOUND)  # shorter than any key ingest accepts
    CALLER.set(f"ip:{ip}")  # anonymous: the engine share is the client address's
    store = request.app[STORE]
    token = await find_token(store, hash_key(key))
    if token is None or token["status"] == TOKEN_STATUS_DISABLED:
        raise NotFound(TOKEN_NOT_FOUND)
    return ok(await token_logs(store, token, args.page))
