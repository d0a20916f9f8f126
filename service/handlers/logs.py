"""``/api/log/`` list and search (one handler each for the admin and self views), and
the public token lookup."""

from __future__ import annotations

from aiohttp import web

from ..errors import InvalidParameter, NotFound, RateLimited
from ..gate import CALLER
from ..keys import SETTINGS, STORE, TOKEN_LIMITER
from ..logs import find_token, list_page, search, token_logs, with_channel
from ..params import check_length, get_page, get_raw, get_str
from ..ratelimit import client_ip
from ..tokenhash import KEY_SPACE, hash_key, key_length
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


def key_from_authorization(header: str) -> str:
    """The key as newer gateway builds send it to the token lookup: ``Authorization``
    raw or with ``Bearer``, ``sk-`` stripped, and only the part before the first ``-``
    after that (clients append ``-<channel>`` to a key)."""
    value = header.strip(KEY_SPACE)
    if value[:7].lower() == "bearer ":
        value = value[7:].strip(KEY_SPACE)
    if "." in value:  # a JWT (of gatelog or the gateway's sign-in), never a token key
        return ""
    if value.startswith("sk-"):
        value = value[3:]
    return value.split("-", 1)[0]


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
    given = get_raw(request.query, "key")
    key = check_length("key", given or "", settings).strip(KEY_SPACE)
    if given is None:  # no `key` at all: newer gateway builds send it in Authorization
        key = key_from_authorization(request.headers.get("Authorization", ""))
        check_length("key", key, settings)
    length = key_length(key)
    if not length:  # "", "sk-": a blank key is no key (one stored before the bound neither)
        raise InvalidParameter("key", "is required (the token's secret key)")
    page = get_page(request.query, settings.token_page_size_default, settings.token_page_size_max)
    if length < settings.ingest_min_token_key_chars:
        raise NotFound(TOKEN_NOT_FOUND)  # shorter than any key ingest accepts
    CALLER.set(f"ip:{ip}")  # anonymous: the engine share is the client address's
    store = request.app[STORE]
    token = await find_token(store, hash_key(key))
    if token is None or token["status"] == TOKEN_STATUS_DISABLED:
        raise NotFound(TOKEN_NOT_FOUND)
    return ok(await token_logs(store, token, page))
