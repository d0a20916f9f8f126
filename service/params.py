"""Query-string parsing and the log filter: request values in, SQL conditions out.

Every condition is a fixed SQL fragment with ``{name:Type}`` placeholders; values go
only into the parameter dict. A parameter that does not parse is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .columns import LOG_COLUMNS, LOGS
from .errors import BadRequest, InvalidParameter
from .settings import Settings
from .timesql import compare
from .tokenhash import KEY_SPACE, key_length

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
#: a series or /api/data without start_timestamp covers the day before its end
DEFAULT_SPAN = 86400
#: the gateway's message for a missing, zero or non-numeric target_timestamp
TARGET_REQUIRED = "target timestamp is required"
#: the largest channel id (the column's type)
MAX_CHANNEL = LOG_COLUMNS["channel_id"].value_range[1]


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
    return check_length(name, raw, settings)


def check_length(name: str, value: str, settings: Settings) -> str:
    """``value`` if it is no longer than a text parameter may be (400 otherwise)."""
    if len(value) > settings.max_text_param:
        raise InvalidParameter(name, f"longer than {settings.max_text_param} characters")
    return value


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


def get_key(query: Mapping[str, str], authorization: str, settings: Settings) -> str:
    """The token lookup's key: the ``key`` parameter (surrounding ASCII whitespace
    ignored) or, without one, the ``Authorization`` header (:func:`key_from_authorization`);
    at most a text parameter's length, and required."""
    given = get_raw(query, "key")
    key = check_length("key", given or "", settings).strip(KEY_SPACE)
    if given is None:  # no `key` at all: newer gateway builds send it in Authorization
        key = key_from_authorization(authorization)
        check_length("key", key, settings)
    # "", "sk-": a blank key is no key (nor is one stored before the bound)
    if not key_length(key):
        raise InvalidParameter("key", "is required (the token's secret key)")
    return key


def get_choice(
    query: Mapping[str, str],
    name: str,
    choices: Collection[str],
    settings: Settings,
    default: str | None = None,
) -> str | None:
    """One of ``choices`` (the enum the document states), or ``default`` when absent."""
    value = get_str(query, name, settings)
    if value is None:
        return default
    if value not in choices:
        raise InvalidParameter(name, f"must be one of {', '.join(choices)}")
    return value


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
            add(compare("created_at", ">=", "start"), "start", self.start)
        if time and self.end is not None:
            add(compare("created_at", "<=", "end"), "end", self.end)
        for name, column in _MATCHED:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "model_name" and "%" in value:
                # The gateway's latest rule: exact, unless the value holds '%' (a LIKE pattern).
                add(f"{column.sql} LIKE {{{name}:String}}", name, like_pattern(value))
            else:
                add(f"{column.sql} = {{{name}:{column.base}}}", name, value)
        clauses.extend(self.extra)
        return (" AND ".join(clauses) or "1"), params


@dataclass(frozen=True)
class Filter:
    """A filter parameter of the log routes: :func:`parse_filter` reads it into the
    :class:`LogFilter` attribute ``attr``, and the OpenAPI document states it from here."""

    name: str
    attr: str
    #: ``type`` (a log type, 0: all), ``int`` (0: unbounded or all) or ``text``
    kind: str
    description: str
    maximum: int = 0
    admin_only: bool = False

    def parse(self, query: Mapping[str, str], settings: Settings) -> int | str | None:
        if self.kind == "type":
            return get_type(query, self.name)
        if self.kind == "int":
            return self.number(query)
        return get_str(query, self.name, settings)

    def number(self, query: Mapping[str, str]) -> int | None:
        """An ``int`` filter's value; 0 is "not given", as on every route."""
        return get_int(query, self.name, 0, minimum=0, maximum=self.maximum) or None


_TYPES = ", ".join(f"{n} {names[0]}" for n, names in LOG_TYPES.items())
#: the filters every log route takes, in the document's order (users' first)
FILTERS: tuple[Filter, ...] = (
    Filter("type", "type", "type", f"log type as the gateway numbers them: 0 all, {_TYPES}"),
    Filter(
        "start_timestamp",
        "start",
        "int",
        "from this Unix second, inclusive (0: unbounded); not after end_timestamp",
        MAX_TIMESTAMP,
    ),
    Filter(
        "end_timestamp",
        "end",
        "int",
        "up to this Unix second, inclusive (0: unbounded)",
        MAX_TIMESTAMP,
    ),
    Filter("token_name", "token_name", "text", "exact token name"),
    Filter(
        "model_name",
        "model_name",
        "text",
        "exact model name; a value containing % is a LIKE pattern (_ one character, "
        "a backslash escapes %, _ or a backslash and is otherwise itself)",
    ),
    Filter("group", "group", "text", "exact group"),
    Filter("request_id", "request_id", "text", "exact request id"),
    Filter(
        "upstream_request_id",
        "upstream_request_id",
        "text",
        "exact request id of the upstream provider",
    ),
    Filter("username", "username", "text", "exact user name (admin only)", admin_only=True),
    Filter(
        "channel",
        "channel",
        "int",
        "channel id, 0: all (admin only)",
        MAX_CHANNEL,
        admin_only=True,
    ),
)
FILTER: dict[str, Filter] = {f.name: f for f in FILTERS}
_COLUMN_OF = {c.dimension or c.name: c for c in LOGS}
#: the filters that match a column's value (all but the type and the time range), in the
#: order of LogFilter's fields, each with its column (``channel`` is ``channel_id``)
_MATCHED = tuple(
    (f.name, _COLUMN_OF[f.name])
    for f in fields(LogFilter)
    if f.name in {x.attr for x in FILTERS} - {"type", "start", "end"}
)
_TIME = ("start", "end")


def check_range(start: int | None, end: int | None) -> None:
    """A time range whose start is after its end is refused, naming the start."""
    if start is not None and end is not None and start > end:
        raise InvalidParameter("start_timestamp", "must not be after end_timestamp")


def filled_range(start: int | None, end: int | None, now: float) -> tuple[int, int]:
    """The range with its defaults: no end is now (or the start, if that is later), no
    start the :data:`DEFAULT_SPAN` before the end."""
    if end is None:
        end = max(int(now), start or 0)
    if start is None:
        start = max(0, end - DEFAULT_SPAN)
    return start, end


def get_target(query: Mapping[str, str], now: float) -> int:
    """``target_timestamp`` of a history delete, as the gateway reads it: digits only, 0
    or missing is "required"; any number of digits is a time, and past
    :data:`MAX_TIMESTAMP` as much in the future as one beyond it."""
    raw = (get_raw(query, "target_timestamp") or "").strip()
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(TARGET_REQUIRED)
    target = int(raw) if len(raw) <= 10 else MAX_TIMESTAMP + 1
    if target == 0:
        raise BadRequest(TARGET_REQUIRED)
    if target > now:
        raise InvalidParameter("target_timestamp", "must not be in the future")
    return target


def parse_filter(
    query: Mapping[str, str], settings: Settings, *, admin: bool, user_id: int | None = None
) -> LogFilter:
    """The list/stat filters (:data:`FILTERS`); the admin-only ones only for admins. The
    time range is read and checked first. ``user_id`` scopes the filter to one user."""
    wanted = [f for f in FILTERS if admin or not f.admin_only]
    times: dict[str, Any] = {f.attr: f.parse(query, settings) for f in wanted if f.attr in _TIME}
    check_range(times["start"], times["end"])
    rest: dict[str, Any] = {f.attr: f.parse(query, settings) for f in wanted if f.attr not in _TIME}
    return LogFilter(**times, **rest, user_id=user_id)


def like_pattern(pattern: str) -> str:
    """A user's LIKE pattern as the engine takes it. The engine reads a backslash before
    ``%``, ``_`` or ``\\`` as an escape and any other backslash as itself, but refuses a
    pattern ending in a lone backslash (a 500 before): that one is taken as itself too."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
