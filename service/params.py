"""Query-string parsing and the log filter: request values in, SQL conditions out.

Every condition is a fixed SQL fragment with ``{name:Type}`` placeholders; values go
only into the parameter dict. A parameter that does not parse is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParameter
from .settings import Settings

# Log types as the gateway's source defines them (spec/reference-behaviour.md): the
# gateway writes the numbers, so filters work on numbers; names are accepted in search.
LOG_TYPES: dict[int, tuple[str, ...]] = {
    1: ("topup", "top-up", "充值"),
    2: ("consume", "consumption", "消费"),
    3: ("manage", "management", "管理"),
    4: ("system", "系统"),
    5: ("error", "错误"),
    6: ("refund", "退款"),
    7: ("login", "登录"),
}
TYPE_BY_NAME = {name: number for number, names in LOG_TYPES.items() for name in names}
MAX_TIMESTAMP = 2**32 - 1
MAX_PAGE = 1_000_000


def get_raw(query: Mapping[str, str], name: str) -> str | None:
    """The parameter's one value, or None. A parameter given twice is refused: which of
    the values counts would differ between a proxy or firewall and the service."""
    getall = getattr(query, "getall", None)
    if getall is None:
        return query.get(name)
    values = getall(name, [])
    if len(values) > 1:
        raise InvalidParameter(name, "given more than once")
    return str(values[0]) if values else None


def get_int(
    query: Mapping[str, str],
    name: str,
    default: int | None = None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int | None:
    raw = get_raw(query, name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 20:
        raise InvalidParameter(name, f"must be an integer, got {raw[:40]!r}")
    value = int(text)
    if minimum is not None and value < minimum:
        raise InvalidParameter(name, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidParameter(name, f"must be at most {maximum}")
    return value


def get_str(query: Mapping[str, str], name: str, settings: Settings) -> str | None:
    raw = get_raw(query, name)
    if raw is None or raw == "":
        return None
    if len(raw) > settings.max_text_param:
        raise InvalidParameter(name, f"longer than {settings.max_text_param} characters")
    return raw


@dataclass(frozen=True)
class Page:
    page: int
    size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def get_page(query: Mapping[str, str], default_size: int, max_size: int) -> Page:
    page = get_int(query, "p", 1, minimum=1, maximum=MAX_PAGE)
    size = get_int(query, "page_size", default_size, minimum=1, maximum=max_size)
    assert page is not None and size is not None
    return Page(page, size)


def get_type(query: Mapping[str, str], name: str = "type") -> int | None:
    value = get_int(query, name, 0)
    if value == 0:
        return None
    if value not in LOG_TYPES:
        known = ", ".join(f"{n} ({names[0]})" for n, names in LOG_TYPES.items())
        raise InvalidParameter(name, f"unknown log type {value}; known: 0 (all), {known}")
    return value


@dataclass
class LogFilter:
    """Which logs a request is about. ``user_id``/``token_id`` scope users and tokens."""

    type: int | None = None
    start: int | None = None
    end: int | None = None
    username: str | None = None
    token_name: str | None = None
    model_name: str | None = None
    channel: int | None = None
    group: str | None = None
    request_id: str | None = None
    upstream_request_id: str | None = None
    user_id: int | None = None
    token_id: int | None = None
    extra: list[str] = field(default_factory=list)

    def where(self, *, time: bool = True, types: bool = True) -> tuple[str, dict[str, Any]]:
        """The WHERE clause body and its parameters."""
        clauses: list[str] = []
        params: dict[str, Any] = {}

        def add(sql: str, name: str, value: Any) -> None:
            clauses.append(sql)
            params[name] = value

        if self.user_id is not None:
            add("user_id = {user_id:UInt64}", "user_id", self.user_id)
        if self.token_id is not None:
            add("token_id = {token_id:UInt64}", "token_id", self.token_id)
        if types and self.type is not None:
            add("type = {type:UInt8}", "type", self.type)
        if time and self.start is not None:
            add("created_at >= toDateTime({start:UInt32}, 'UTC')", "start", self.start)
        if time and self.end is not None:
            add("created_at <= toDateTime({end:UInt32}, 'UTC')", "end", self.end)
        if self.username is not None:
            add("username = {username:String}", "username", self.username)
        if self.token_name is not None:
            add("token_name = {token_name:String}", "token_name", self.token_name)
        if self.model_name is not None:
            # The gateway's latest rule: exact, unless the value holds '%' (a LIKE pattern).
            if "%" in self.model_name:
                add(
                    "model_name LIKE {model_name:String}",
                    "model_name",
                    like_pattern(self.model_name),
                )
            else:
                add("model_name = {model_name:String}", "model_name", self.model_name)
        if self.channel is not None:
            add("channel_id = {channel:UInt32}", "channel", self.channel)
        if self.group is not None:
            add("`group` = {group:String}", "group", self.group)
        if self.request_id is not None:
            add("request_id = {request_id:String}", "request_id", self.request_id)
        if self.upstream_request_id is not None:
            add(
                "upstream_request_id = {upstream_request_id:String}",
                "upstream_request_id",
                self.upstream_request_id,
            )
        clauses.extend(self.extra)
        return (" AND ".join(clauses) or "1"), params


def parse_filter(query: Mapping[str, str], settings: Settings, *, admin: bool) -> LogFilter:
    """The list/stat filters; ``username`` and ``channel`` only for admins."""
    start = get_int(query, "start_timestamp", 0, minimum=0, maximum=MAX_TIMESTAMP) or None
    end = get_int(query, "end_timestamp", 0, minimum=0, maximum=MAX_TIMESTAMP) or None
    if start is not None and end is not None and start > end:
        raise InvalidParameter("start_timestamp", "must not be after end_timestamp")
    flt = LogFilter(
        type=get_type(query),
        start=start,
        end=end,
        token_name=get_str(query, "token_name", settings),
        model_name=get_str(query, "model_name", settings),
        group=get_str(query, "group", settings),
        request_id=get_str(query, "request_id", settings),
        upstream_request_id=get_str(query, "upstream_request_id", settings),
    )
    if admin:
        flt.username = get_str(query, "username", settings)
        flt.channel = get_int(query, "channel", 0, minimum=0, maximum=2**32 - 1) or None
    return flt


def like_pattern(pattern: str) -> str:
    """A user's LIKE pattern as the engine takes it. The engine reads a backslash before
    ``%``, ``_`` or ``\\`` as an escape and any other backslash as itself, but refuses a
    pattern ending in a lone backslash (a 500 before): that one is taken as itself too."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
