"""The envelope and the one error path.

Every response is ``{"success", "message", "data"}``. The middleware turns every
failure into that envelope with a fitting status; unknown exceptions are logged with
the request id and answered as a bare 500 that leaks nothing. It also stamps each
response with ``X-Request-Id`` and writes one JSON log line per request.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import ApiError, EngineError

log = logging.getLogger("gatelog.request")
REQUEST_ID = web.RequestKey("request_id", str)
ELAPSED = web.RequestKey("elapsed", float)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def envelope(
    data: Any = None, message: str = "", success: bool = True, status: int = 200
) -> web.Response:
    return web.json_response(
        {"success": success, "message": message, "data": data}, status=status, dumps=dumps
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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        response = await handler(request)
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
    except Exception:
        log.exception("unhandled error (request %s)", request_id)
        response = fail(500, f"internal error (request {request_id})")
    response.headers["X-Request-Id"] = request_id
    elapsed = time.perf_counter() - started
    request[ELAPSED] = elapsed
    log.info(
        dumps(
            {
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "ms": round(elapsed * 1000, 2),
                "remote": request.remote,
            }
        )
    )
    return response
