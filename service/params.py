"""Query-string parsing and the log filter: request values in, SQL conditions out.

Every condition is a fixed SQL fragment with ``{name:Type}`` placeholders; values go
only into the parameter dict. A parameter that does not parse is a 400 that names it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

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


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """The IANA zones accepted as ``tz`` (the system's tz database; each is known to the
    engine's own copy too)."""
    return frozenset(available_timezones())


def get_zone(query: Mapping[str, str], name: str, default: str) -> str:
    """The IANA zone the parameter names (surrounding spaces ignored), or ``default``."""
    raw = get_raw(query, name)
    if raw is None or raw.strip() == "":
        return default
    zone = raw.strip()
    if zone not in zone_names():
        raise InvalidParameter(
            name, f"unknown time zone {zone[:40]!r}; use an IANA name such as Asia/Shanghai"
        )
    return zone


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
class Setting:
    """A bound or default that is a setting: the :class:`Settings` attribute ``name``."""

    name: str


def _resolve(value: Any, settings: Settings) -> Any:
    return getattr(settings, value.name) if isinstance(value, Setting) else value


@dataclass(frozen=True)
class Param:
    """A query parameter: how a route reads it (:meth:`read`) and how the OpenAPI document
    states it (``service.openapi`` renders every field but ``attr``).

    ``kind`` is one of

    - ``type``: a log type (0: all),
    - ``int``: ASCII digits within ``[minimum, maximum]``, ``default`` when absent,
    - ``text``: at most ``GATELOG_MAX_TEXT_PARAM`` characters,
    - ``choice``: one of ``choices``, ``default`` when absent,
    - ``zone``: an IANA time zone, ``default`` when absent,
    - ``key``: the token lookup's key (:func:`get_key`; it may come in ``Authorization``),
    - ``target``: a history delete's ``target_timestamp`` (:func:`get_target`),
    - ``ignored``: sent by the gateway's UI and never read.

    A filter (``attr``: the :class:`LogFilter` attribute it sets) reads 0 as "not given",
    as on every route. A bound or default may be a :class:`Setting`, and the description
    may name a setting as ``{settings.max_series_buckets}``. ``key`` is the parameter's
    name among the document's parameters when two routes word the same ``name`` apart.
    """

    name: str
    kind: str
    description: str
    attr: str = ""
    minimum: int = 0
    maximum: int | Setting = 0
    default: int | str | Setting | None = None
    choices: tuple[str, ...] = ()
    admin_only: bool = False
    required: bool = False
    key: str = ""

    @property
    def ref(self) -> str:
        """Its name among the document's parameters."""
        return self.key or self.name

    def bounds(self, settings: Settings) -> tuple[int, int]:
        return self.minimum, _resolve(self.maximum, settings)

    def default_for(self, settings: Settings) -> Any:
        return _resolve(self.default, settings)

    def describe(self, settings: Settings) -> str:
        return self.description.format(settings=settings)

    def read(
        self,
        query: Mapping[str, str],
        settings: Settings,
        clock: Callable[[], float],
        authorization: str,
    ) -> Any:
        """The parameter's value in ``query``, or a 400 that names it."""
        if self.kind == "type":
            return get_type(query, self.name)
        if self.kind == "int":
            low, high = self.bounds(settings)
            value = get_int(query, self.name, self.default_for(settings), minimum=low, maximum=high)
            return (value or None) if self.attr else value
        if self.kind == "text":
            return get_str(query, self.name, settings)
        if self.kind == "choice":
            return get_choice(query, self.name, self.choices, settings, self.default_for(settings))
        if self.kind == "zone":
            return get_zone(query, self.name, self.default_for(settings))
        if self.kind == "key":
            return get_key(query, authorization, settings)
        if self.kind == "target":
            return get_target(query, clock())
        if self.kind == "ignored":
            return None
        raise ValueError(f"parameter {self.name}: unknown kind {self.kind!r}")


#: the log types as the document lists them
TYPE_NAMES = ", ".join(f"{n} {names[0]}" for n, names in LOG_TYPES.items())
#: the filters every log route takes, in the document's order (users' first)
FILTERS: tuple[Param, ...] = (
    Param(
        "type", "type", f"log type as the gateway numbers them: 0 all, {TYPE_NAMES}", attr="type"
    ),
    Param(
        "start_timestamp",
        "int",
        "from this Unix second, inclusive (0: unbounded); not after end_timestamp",
        attr="start",
        maximum=MAX_TIMESTAMP,
    ),
    Param(
        "end_timestamp",
        "int",
        "up to this Unix second, inclusive (0: unbounded)",
        attr="end",
        maximum=MAX_TIMESTAMP,
    ),
    Param("token_name", "text", "exact token name", attr="token_name"),
    Param(
        "model_name",
        "text",
        "exact model name; a value containing % is a LIKE pattern (_ one character, "
        "a backslash escapes %, _ or a backslash and is otherwise itself)",
        attr="model_name",
    ),
    Param("group", "text", "exact group", attr="group"),
    Param("request_id", "text", "exact request id", attr="request_id"),
    Param(
        "upstream_request_id",
        "text",
        "exact request id of the upstream provider",
        attr="upstream_request_id",
    ),
    Param("username", "text", "exact user name (admin only)", attr="username", admin_only=True),
    Param(
        "channel",
        "int",
        "channel id, 0: all (admin only)",
        attr="channel",
        maximum=MAX_CHANNEL,
        admin_only=True,
    ),
)
FILTER: dict[str, Param] = {f.name: f for f in FILTERS}
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


@dataclass(frozen=True)
class Args:
    """A request's parameters as its route read them: the log filter (the filters and
    the time range) and every other parameter's value by its name."""

    filter: LogFilter
    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def page(self) -> Page:
        return Page(self["p"], self["page_size"])


@dataclass(frozen=True)
class ParamTable:
    """The query parameters one route takes, in the order the document lists them, and
    its rules on the time range; :meth:`parse` reads them all. The time range comes
    first (checked, then filled and bounded where the route says so), then the other
    filters, then the rest in this order; the first that does not parse is the 400."""

    params: tuple[Param, ...] = ()
    #: a range without ends covers the :data:`DEFAULT_SPAN` before now (:func:`filled_range`)
    fill_range: bool = False
    #: the longest filled range the route answers (0: any), refused with ``span_message``
    max_span: int = 0
    span_message: str = ""

    def parse(
        self,
        query: Mapping[str, str],
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        authorization: str = "",
        user_id: int | None = None,
    ) -> Args:
        """The request's parameters; ``user_id`` scopes the filter to one user's logs."""

        def read(params: Iterable[Param]) -> dict[str, Any]:
            return {p.attr or p.name: p.read(query, settings, clock, authorization) for p in params}

        times = read(p for p in self.params if p.attr in _TIME)
        start, end = times.get("start"), times.get("end")
        check_range(start, end)
        if self.fill_range:
            start, end = filled_range(start, end, clock())
            if self.max_span and end - start > self.max_span:
                raise BadRequest(self.span_message)
        filters = read(p for p in self.params if p.attr and p.attr not in _TIME)
        values = read(p for p in self.params if not p.attr)
        return Args(LogFilter(start=start, end=end, **filters, user_id=user_id), values)


@dataclass(frozen=True)
class ByAudience:
    """The parameter tables of a resource's admin route and of its users' route."""

    admin: ParamTable
    user: ParamTable

    def of(self, admin: bool) -> ParamTable:
        return self.admin if admin else self.user

    @property
    def tables(self) -> tuple[ParamTable, ParamTable]:
        return self.admin, self.user


def like_pattern(pattern: str) -> str:
    """A user's LIKE pattern as the engine takes it. The engine reads a backslash before
    ``%``, ``_`` or ``\\`` as an escape and any other backslash as itself, but refuses a
    pattern ending in a lone backslash (a 500 before): that one is taken as itself too."""
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


def like_escape(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
