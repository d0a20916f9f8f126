"""Response headers every answer carries, the token route's CORS, and the HTTP parser's
own error answers (SECURITY.md, "Headers").

- Every answer: ``X-Content-Type-Options: nosniff`` and ``Server: gatelog`` (no Python
  or aiohttp version banner); ``Cache-Control: no-store`` unless the handler chose
  otherwise (the dashboard's assets are cacheable); a 401 carries ``WWW-Authenticate``.
- ``GET /api/log/token`` is the one cross-origin route. With ``GATELOG_CORS_ORIGINS`` at
  its default ``*`` it answers a literal ``Access-Control-Allow-Origin: *`` (the answer
  does not depend on the origin, and no credentials are involved: the key is a
  parameter); with a list of origins it names the caller's origin when listed, and says
  ``Vary: Origin`` on every answer of the route. The origin ``null`` is never named.
  ``Retry-After`` and ``X-Request-Id`` are exposed to scripts. Errors of the route (400,
  404, 429) carry the same headers, so a page can read them. A preflight allows GET and
  HEAD and only the request headers the route reads (``Authorization``, which newer
  gateway builds use for the key, and ``X-Request-Id``); anything else is a 403.

Why not aiohttp-cors (kept for nothing else, so dropped): version 0.8 copies the
request's ``Origin`` into ``Access-Control-Allow-Origin`` in every case, ``null``
included, never answers ``*``, never sends ``Vary``, and either allows every requested
header (``allow_headers="*"``) or answers a disallowed one with its own plain-text 403.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .keys import SETTINGS

TOKEN_PATH = "/api/log/token"
SERVER = "gatelog"
CACHEABLE_PREFIXES = ("/dashboard/assets/",)
EXPOSED = "Retry-After, X-Request-Id"
PREFLIGHT_METHODS = ("GET", "HEAD")
#: the request headers the token route reads; a preflight asking for more is refused
PREFLIGHT_HEADERS = ("authorization", "x-request-id")
PREFLIGHT_MAX_AGE = "600"
WWW_AUTHENTICATE = 'Bearer realm="gatelog"'


def _origins(request: web.Request) -> tuple[str, ...]:
    settings = request.app.get(SETTINGS)
    return settings.cors_origins if settings is not None else ("*",)


def allowed_origin(origins: tuple[str, ...], origin: str | None) -> str | None:
    """What ``Access-Control-Allow-Origin`` says to a caller from ``origin``, or None."""
    if origin is None:
        return None
    if "*" in origins:
        return "*"
    if origin != "null" and origin in origins:
        return origin
    return None


def cors_headers(request: web.Request, headers: Any) -> None:
    origins = _origins(request)
    if "*" not in origins:
        headers["Vary"] = "Origin"
    allow = allowed_origin(origins, request.headers.get("Origin"))
    if allow is not None:
        headers["Access-Control-Allow-Origin"] = allow
        headers["Access-Control-Expose-Headers"] = EXPOSED


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: runs for handler answers, middleware errors and streams."""
    headers = response.headers
    headers["Server"] = SERVER
    headers.setdefault("X-Content-Type-Options", "nosniff")
    if not request.path.startswith(CACHEABLE_PREFIXES):
        headers.setdefault("Cache-Control", "no-store")
    if response.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    if request.path == TOKEN_PATH:
        cors_headers(request, headers)


async def preflight(request: web.Request) -> web.StreamResponse:
    """``OPTIONS /api/log/token``: the CORS preflight."""
    from .errors import BadRequest, Forbidden

    origin = request.headers.get("Origin")
    method = request.headers.get("Access-Control-Request-Method", "").strip().upper()
    if origin is None or not method:
        raise BadRequest("a CORS preflight needs Origin and Access-Control-Request-Method")
    if allowed_origin(_origins(request), origin) is None:
        raise Forbidden("this origin may not call the token lookup")
    if method not in PREFLIGHT_METHODS:
        raise Forbidden(f"method {method[:16]!r} not allowed: the token lookup is GET only")
    asked = request.headers.get("Access-Control-Request-Headers", "")
    extra = sorted(
        {h.strip().lower() for h in asked.split(",") if h.strip()} - set(PREFLIGHT_HEADERS)
    )
    if extra:
        shown = ", ".join(h[:40] for h in extra[:5])
        raise Forbidden(f"request headers not allowed on the token lookup: {shown}")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": ", ".join(PREFLIGHT_METHODS),
            "Access-Control-Allow-Headers": ", ".join(PREFLIGHT_HEADERS),
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        },
    )


# --- the HTTP parser's own answers ------------------------------------------------------
#
# A request aiohttp cannot parse (a NUL in a header, a request line past its limit, TLS on
# the HTTP port) never reaches the app: no middleware, no response signal. aiohttp answers
# it from RequestHandler.handle_error with a text/plain body that quotes the offending
# bytes, a secret key in the request line included. aiohttp has no setting or hook for
# that answer, so handle_error is wrapped once: the original still logs (filtered to one
# line by service.jsonlog) and refuses when a response already started; the answer sent
# is the envelope with a fixed message per status and the headers above.

_PARSER_MESSAGES = {
    400: "malformed HTTP request: the request line or a header could not be read",
    413: "request too large",
    431: "request headers too large",
    500: "internal error",
    504: "request timed out",
}


def parser_error_response(status: int) -> web.Response:
    message = _PARSER_MESSAGES.get(status, "request refused")
    body = json.dumps({"success": False, "message": message, "data": None})
    response = web.Response(
        status=status,
        text=body,
        content_type="application/json",
        headers={
            "Server": SERVER,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
    response.force_close()
    return response


_original_handle_error = RequestHandler.handle_error


def _handle_error(
    self: RequestHandler,
    request: Any,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    _original_handle_error(self, request, status, exc, message)  # logs; may raise
    return parser_error_response(status)


def install_parser_errors() -> None:
    """Idempotent: every aiohttp server of this process answers parser errors so."""
    if RequestHandler.handle_error is not _handle_error:
        RequestHandler.handle_error = _handle_error  # type: ignore[method-assign]
