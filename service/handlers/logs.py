"""``/api/log/`` list and search, admin and self views, and the public token lookup."""

from __future__ import annotations

from aiohttp import web

from ..auth import ROLE_ADMIN, ROLE_USER
from ..errors import InvalidParameter, NotFound, RateLimited
from ..gate import CALLER
from ..keys import SETTINGS, STORE, TOKEN_LIMITER
from ..logs import (
    ADMIN_FIELDS,
    USER_FIELDS,
    find_token,
    list_page,
    search,
    token_logs,
    with_channel,
)
from ..params import check_length, get_page, get_raw, get_str, parse_filter
from ..ratelimit import client_ip
from ..tokenhash import KEY_SPACE, hash_key
from ..web import ok
from . import principal

TOKEN_NOT_FOUND = "Token does not exist or no permission"
TOKEN_STATUS_DISABLED = 2


async def list_all(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    settings = request.app[SETTINGS]
    flt = parse_filter(request.query, settings, admin=True)
    page = get_page(request.query, settings.page_size_default, settings.page_size_max)
    items, total = await list_page(request.app[STORE], flt, page, ADMIN_FIELDS, user_view=False)
    with_channel(items)
    return ok({"items": items, "total": total, "page": page.page, "page_size": page.size})


async def list_self(request: web.Request) -> web.Response:
    who = await principal(request, ROLE_USER)
    settings = request.app[SETTINGS]
    flt = parse_filter(request.query, settings, admin=False)
    flt.user_id = who.user_id
    # newer gateway builds: keyword on the list too (as in search)
    keyword = get_str(request.query, "keyword", settings)
    page = get_page(request.query, settings.page_size_default, settings.page_size_max)
    items, total = await list_page(
        request.app[STORE], flt, page, USER_FIELDS, user_view=True, keyword=keyword
    )
    return ok({"items": items, "total": total, "page": page.page, "page_size": page.size})


def _search_args(request: web.Request, admin: bool):  # type: ignore[no-untyped-def]
    settings = request.app[SETTINGS]
    keyword = get_str(request.query, "keyword", settings)
    page = get_page(request.query, settings.search_limit_default, settings.token_page_size_max)
    flt = parse_filter(request.query, settings, admin=admin)
    return keyword, page, flt


async def search_all(request: web.Request) -> web.Response:
    await principal(request, ROLE_ADMIN)
    keyword, page, flt = _search_args(request, admin=True)
    items = await search(request.app[STORE], flt, keyword, page, ADMIN_FIELDS, user_view=False)
    return ok(with_channel(items))


async def search_self(request: web.Request) -> web.Response:
    who = await principal(request, ROLE_USER)
    keyword, page, flt = _search_args(request, admin=False)
    flt.user_id = who.user_id
    items = await search(request.app[STORE], flt, keyword, page, USER_FIELDS, user_view=True)
    return ok(items)


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
    if not key:
        raise InvalidParameter("key", "is required (the token's secret key)")
    page = get_page(request.query, settings.token_page_size_default, settings.token_page_size_max)
    CALLER.set(f"ip:{ip}")  # anonymous: the engine share is the client address's
    store = request.app[STORE]
    token = await find_token(store, hash_key(key))
    if token is None or token["status"] == TOKEN_STATUS_DISABLED:
        raise NotFound(TOKEN_NOT_FOUND)
    return ok(await token_logs(store, token, page))
