"""The web dashboard at ``/dashboard/``: a static page and its assets, all served by
gatelog itself (clusters without internet). The charting library, plotly.js, is the
built file shipped inside the ``plotly`` wheel (a dependency), found at run time, never
copied into the repository. The page calls the same API as everyone else, with the
same rules: nothing here reads the engine."""

from __future__ import annotations

import gzip
from functools import cache
from importlib import resources
from pathlib import Path

from aiohttp import web

from ..errors import ApiError
from ..keys import SETTINGS

HERE = Path(__file__).resolve().parent.parent / "dashboard"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
# Our own files, by name (an allowlist: no path from the request reaches the filesystem).
_OWN = {"app.js", "app.css"}
PLOTLY = "plotly.min.js"


class AssetMissing(ApiError):
    status = 503


@cache
def plotly_path() -> Path:
    """The built plotly.js inside the installed plotly package."""
    path = Path(str(resources.files("plotly") / "package_data" / PLOTLY))
    if not path.is_file():  # pragma: no cover - a broken install
        raise AssetMissing("the dashboard's chart library is missing: reinstall gatelog")
    return path


@cache
def _asset(name: str) -> tuple[bytes, bytes]:
    """(plain, gzip) bytes of an asset, read once."""
    path = plotly_path() if name == PLOTLY else HERE / name
    data = path.read_bytes()
    return data, gzip.compress(data, compresslevel=6)


def _send(request: web.Request, name: str, cache_seconds: int) -> web.Response:
    plain, packed = _asset(name)
    headers = {
        "Content-Type": _TYPES[Path(name).suffix] + "; charset=utf-8",
        "Cache-Control": f"public, max-age={cache_seconds}",
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=packed, headers=headers)
    return web.Response(body=plain, headers=headers)


async def root(request: web.Request) -> web.StreamResponse:
    # returned, not raised: the middleware then counts and logs it like any answer
    return web.Response(status=302, headers={"Location": "/dashboard/"})


async def page(request: web.Request) -> web.Response:
    # The page tries the gateway's session (cookies, same origin) only when gatelog
    # delegates sign-in to a gateway; else it opens on the token form.
    plain, _ = _asset("index.html")
    if request.app[SETTINGS].gateway_url:
        plain = plain.replace(b'<body data-gateway="">', b'<body data-gateway="1">', 1)
    return web.Response(
        body=plain,
        headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache",
                 "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name != PLOTLY and name not in _OWN:
        raise web.HTTPNotFound()
    # Our files change with each release: revalidate; plotly's is versioned by the package.
    return _send(request, name, 86400 if name == PLOTLY else 0)
