"""``/api/log/`` list and search (one handler each, registered for the admin and self
audiences), and the public token lookup."""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound, RateLimited
from ..gate import CALLER
from ..keys import SETTINGS, STORE, TOKEN_LIMITER
from ..logs import find_token, list_page, search, token_logs, with_channel
from ..params import get_key, get_page, get_str
from ..ratelimit import client_ip
from ..tokenhash import hash_key, key_length
from ..web import ok
from . import Audience, principal, scoped_filter

TOKEN_NOT_FOUND = "Token does not exist or no permission"
TOKEN_STATUS_DISABLED = 2


async def list_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    settings = request.app[SETTINGS]
    flt = scoped_filter(request, audience, who)
    # newer gateway builds: keyword on a user's list too (as in search)
    keyword = None if audience.admin else get_str(request.query, "keyword", settings)
    page = get_page(request.query, settings.page_size_default, settings.page_size_max)
    items, total = await list_page(
        request.app[STORE], flt, page, audience.fields, audience.user_view, keyword=keyword
    )
    if audience.admin:
        with_channel(items)
    return ok({"items": items, "total": total, "page": page.page, "page_size": page.size})


async def search_logs(request: web.Request, audience: Audience) -> web.Response:
    who = await principal(request, audience.role)
    settings = request.app[SETTINGS]
    keyword = get_str(request.query, "keyword", settings)
    page = get_page(request.query, settings.search_limit_default, settings.token_page_size_max)
    flt = scoped_filter(request, audience, who)
    items = await search(
        request.app[STORE], flt, keyword, page, audience.fields, audience.user_view
    )
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
    settings = request.app[SETTINGS]
    key = get_key(request.query, request.headers.get("Authorization", ""), settings)
    page = get_page(request.query, settings.token_page_size_default, settings.token_page_size_max)
    if key_length(key) < settings.ingest_min_token_key_chars:
        raise NotFound(TOKEN_NOT_FOUND)  # shorter than any key ingest accepts
    CALLER.set(f"ip:{ip}")  # anonymous: the engine share is the client address's
    store = request.app[STORE]
    token = await find_token(store, hash_key(key))
    if token is None or token["status"] == TOKEN_STATUS_DISABLED:
        raise NotFound(TOKEN_NOT_FOUND)
    return ok(await token_logs(store, token, page))
