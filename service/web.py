"""The envelope and the one error path.

Every response is ``{"success", "message", "data"}``. The middleware turns every
failure into that envelope with a fitting status; unknown exceptions are logged with
the request id and answered as a bare 500 that leaks nothing. It also stamps each
response with ``X-Request-Id``, records the request in the app's metrics and writes one
structured log line per request (``service.jsonlog`` renders it as one JSON object).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import ApiError, EngineError
from .keys import METRICS, SETTINGS
from .metrics import ENGINE_ERROR, UNMATCHED, error_kind

log = logging.getLogger("gatelog.request")
REQUEST_ID = web.RequestKey("request_id", str)
ELAPSED = web.RequestKey("elapsed", float)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


try:  # a dependency (pyproject.toml); an environment installed before it still serves
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]


def dumps_bytes(value: Any) -> bytes:
    """``dumps(value)`` as UTF-8: the same bytes (compact, non-ASCII kept), through orjson
    where it can encode the value (about 20x faster: 0.33 -> 0.015 ms for a page of 20
    admin items, 0.58 -> 0.05 ms for 100), else through :func:`dumps`."""
    if _orjson is not None:
        try:
            return bytes(_orjson.dumps(value))
        except TypeError:  # e.g. an integer beyond 64 bits: json encodes it
            pass
    return dumps(value).encode()


def envelope(
    data: Any = None, message: str = "", success: bool = True, status: int = 200
) -> web.Response:
    return web.Response(
        body=dumps_bytes({"success": success, "message": message, "data": data}),
        status=status,
        content_type="application/json",
    )


def ok(data: Any) -> web.Response:
    return envelope(data)


def fail(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    response = envelope(None, message, success=False, status=status)
    if headers:
        response.headers.update(headers)
    return response


_HTTP_MESSAGES = {
    404: "not found",
    405: "method not allowed",
    413: "request body too large",
}


REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,64}")


def request_id_of(request: web.Request) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token (it goes into logs and
    headers), else a fresh one."""
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID_PATTERN.fullmatch(given) else uuid.uuid4().hex


def route_of(request: web.Request) -> str:
    """The matched route's pattern (``/api/log/``), never the raw path: metric labels
    and log fields stay bounded whatever paths clients send."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


async def stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: streamed responses send their headers before the
    middleware sees them, so the id is stamped here too."""
    if REQUEST_ID in request:
        response.headers["X-Request-Id"] = request[REQUEST_ID]


class BodyTimeout(Exception):
    """The request body did not arrive within GATELOG_BODY_TIMEOUT_SECONDS."""


async def read_body(request: web.Request) -> None:
    """Read a request's body (aiohttp keeps it for the handler's ``read()``/``json()``)
    within the body timeout, so a writer trickling bytes is cut, not held for minutes."""
    if not request.body_exists:
        return
    settings = request.app.get(SETTINGS)
    timeout = settings.body_timeout_seconds if settings is not None else 30.0
    try:
        await asyncio.wait_for(request.read(), timeout=timeout)
    except TimeoutError:
        metrics = request.app.get(METRICS)
        if metrics is not None:
            metrics.slow_client("body")
        raise BodyTimeout from None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one error path, and per request: the id, the metrics and one log line."""
    request_id = request_id_of(request)
    request[REQUEST_ID] = request_id
    metrics = request.app.get(METRICS)
    started = time.perf_counter()
    error: str | None = None
    response: web.StreamResponse
    if metrics is not None:
        metrics.in_flight.inc()
    try:
        await read_body(request)
        response = await handler(request)
    except BodyTimeout:
        response = fail(408, "request body not received in time: send it whole and promptly")
        response.force_close()
    except ApiError as exc:
        headers = getattr(exc, "headers", None)
        response = fail(exc.status, exc.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = _HTTP_MESSAGES.get(exc.status, exc.reason.lower())
        if exc.status == 413:
            message = f"request body too large: {exc.text or ''}".strip().rstrip(":")
        response = fail(exc.status, message)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except EngineError:
        log.exception("engine rejected a statement (request %s)", request_id)
        response = fail(500, f"internal error (request {request_id})")
        error = ENGINE_ERROR
    except Exception:
        log.exception("unhandled error (request %s)", request_id)
        response = fail(500, f"internal error (request {request_id})")
    finally:
        if metrics is not None:
            metrics.in_flight.dec()
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    elapsed = time.perf_counter() - started
    request[ELAPSED] = elapsed
    route = route_of(request)
    if response.status >= 400:
        error = error or error_kind(response.status)
    if metrics is not None:
        metrics.observe_request(route, request.method, response.status, elapsed)
        if error is not None:
            metrics.error(error)
    fields = {
        "request_id": request_id,
        "method": request.method,
        "route": route,
        "path": request.path,
        "status": response.status,
        "ms": round(elapsed * 1000, 2),
        "remote": request.remote,
    }
    if error is not None:
        fields["error"] = error
    # The message is the JSON itself (readable under any formatter); ``fields`` lets
    # service.jsonlog merge them into its one-object line.
    log.info(dumps(fields), extra={"fields": fields})
    return response
