"""The project's own error types; the middleware maps each to an HTTP status.

Driver errors are translated into these where the driver is called (``service.store``),
so handlers and the middleware never see a clickhouse-connect or chDB exception.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered in the envelope with ``status`` and a message safe to show."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ApiError):
    status = 400


class InvalidParameter(BadRequest):
    """A request parameter is malformed; the message names it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"invalid parameter '{name}': {problem}")
        self.name = name


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class PayloadTooLarge(ApiError):
    status = 413


class RateLimited(ApiError):
    status = 429


class EngineUnavailable(ApiError):
    """The ClickHouse engine cannot be reached or is overloaded (503)."""

    status = 503


class EngineError(Exception):
    """The engine rejected a statement of ours: a bug, logged and answered as a bare 500."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
