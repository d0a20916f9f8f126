"""Which query parameters each route takes: every parameter that is not a filter,
declared once, and the parameter table of each route (:class:`~service.params.ParamTable`).

The handlers read a request's parameters only through these tables, and the OpenAPI
document (``service.openapi``) states each route's parameters from the same tables, so
a name, bound, enum, default or description is written here and nowhere else. The
filters every log route takes are :data:`service.params.FILTERS`; the allowlists of the
choices belong to the modules that use them (``stats.INTERVALS``, ``stats.GROUP_KEYS_*``,
``export.FORMATS``).
"""

from __future__ import annotations

from dataclasses import replace

from .export import DEFAULT_FORMAT, FORMATS
from .params import (
    DEFAULT_SPAN,
    FILTER,
    FILTERS,
    LOG_TYPES,
    MAX_PAGE,
    MAX_TIMESTAMP,
    TYPE_NAMES,
    ByAudience,
    Param,
    ParamTable,
    Setting,
)
from .stats import DEFAULT_INTERVAL, DEFAULT_STAT_TYPE, GROUP_KEYS_ADMIN, GROUP_KEYS_USER, INTERVALS
from .usage import SELF_MAX_SPAN, SELF_SPAN_MESSAGE

PAGE = Param("p", "int", "page, from 1", minimum=1, maximum=MAX_PAGE, default=1)


def _page_size(key: str, default: str, maximum: str) -> Param:
    """``page_size``, whose default and bound are the settings a route pages by."""
    return Param(
        "page_size",
        "int",
        "items per page",
        minimum=1,
        maximum=Setting(maximum),
        default=Setting(default),
        key=key,
    )


PAGE_SIZE = _page_size("page_size", "page_size_default", "page_size_max")
SEARCH_PAGE_SIZE = _page_size("search_page_size", "search_limit_default", "token_page_size_max")
TOKEN_PAGE_SIZE = _page_size("token_page_size", "token_page_size_default", "token_page_size_max")
KEYWORD = Param(
    "keyword",
    "text",
    "a log type (number or name, e.g. 2 or consume) matches that type; any other "
    "text matches content or model name, case-insensitively",
)
KEY = Param(
    "key",
    "key",
    "the token's secret key, with or without sk- (surrounding ASCII whitespace is ignored)",
    required=True,
)
TARGET = Param(
    "target_timestamp",
    "target",
    "delete every log created before this Unix second; not in the future",
    minimum=1,
    maximum=MAX_TIMESTAMP,
    required=True,
)
INTERVAL = Param(
    "interval",
    "choice",
    "bucket width; hours and days are those of `tz` (local midnights and, in zones "
    "offset by a half hour, local hours); at most {settings.max_series_buckets} "
    "buckets over the range, counting one series per group_by value and the total",
    choices=tuple(INTERVALS),
    default=DEFAULT_INTERVAL,
)
GROUP_BY_USER = Param(
    "group_by",
    "choice",
    "one series per value",
    choices=tuple(GROUP_KEYS_USER),
    key="group_by_user",
)
GROUP_BY_ADMIN = replace(GROUP_BY_USER, choices=tuple(GROUP_KEYS_ADMIN), key="group_by_admin")
TZ = Param(
    "tz",
    "zone",
    "IANA time zone whose hours (and days) the buckets follow; default "
    "GATELOG_TIME_ZONE (UTC unless set)",
    default=Setting("time_zone"),
)
FORMAT = Param(
    "format",
    "choice",
    " or ".join(f"{name} ({media.split(';')[0]})" for name, media in FORMATS.items()),
    choices=tuple(FORMATS),
    default=DEFAULT_FORMAT,
)
DEFAULT_TIME = Param(
    "default_time", "ignored", "sent by the gateway's UI and ignored, as the gateway does"
)
_HOURS = DEFAULT_SPAN // 3600
# The same filters in a route's own words: a stat's type, and the time range of the
# series and of /api/data, which default to the day before the end (fill_range).
STAT_TYPE = replace(
    FILTER["type"],
    key="stat_type",
    description=f"which logs count: 0 or missing counts {DEFAULT_STAT_TYPE} "
    f"({LOG_TYPES[DEFAULT_STAT_TYPE][0]}), as the gateway's stat does; any other type "
    f"counts that type ({TYPE_NAMES})",
)
SERIES_START = replace(
    FILTER["start_timestamp"],
    key="series_start",
    description=f"first second, inclusive (0 or missing: {_HOURS} hours before the end)",
)
SERIES_END = replace(
    FILTER["end_timestamp"],
    key="series_end",
    description="last second, inclusive (0 or missing: now, or the start if that is later)",
)
DATA_START = replace(
    FILTER["start_timestamp"],
    key="data_start",
    description="hours starting at or after this Unix second (0 or missing: "
    f"{_HOURS} hours before the end)",
)
DATA_END = replace(
    FILTER["end_timestamp"],
    key="data_end",
    description="hours starting at or before this Unix second (missing: now)",
)
DATA_USERNAME = Param("username", "text", "exact user name: rows per user", key="data_username")

ADMIN_FILTERS = FILTERS
USER_FILTERS = tuple(f for f in FILTERS if not f.admin_only)
_TIME = (FILTER["start_timestamp"], FILTER["end_timestamp"])
#: the text filters both audiences have (the stat's and series' own dimensions)
_TEXT = tuple(f for f in USER_FILTERS if f.kind == "text")
_ADMIN_ONLY = tuple(f for f in FILTERS if f.admin_only)


def _audiences(
    admin: tuple[Param, ...], user: tuple[Param, ...], *, fill_range: bool = False
) -> ByAudience:
    return ByAudience(ParamTable(admin, fill_range), ParamTable(user, fill_range))


# newer gateway builds send keyword on a user's list too (as in search)
LIST = _audiences((PAGE, PAGE_SIZE, *ADMIN_FILTERS), (PAGE, PAGE_SIZE, KEYWORD, *USER_FILTERS))
SEARCH = _audiences(
    (KEYWORD, PAGE, SEARCH_PAGE_SIZE, *ADMIN_FILTERS),
    (KEYWORD, PAGE, SEARCH_PAGE_SIZE, *USER_FILTERS),
)
TOKEN_LOOKUP = ParamTable((KEY, PAGE, TOKEN_PAGE_SIZE))
DELETE = ParamTable((TARGET,))
STAT = _audiences(
    (STAT_TYPE, *_TIME, *_TEXT, *_ADMIN_ONLY),
    # a user's stat also counts their day, which begins at midnight in `tz`
    (STAT_TYPE, *_TIME, *_TEXT, TZ),
)
SERIES = _audiences(
    (INTERVAL, GROUP_BY_ADMIN, STAT_TYPE, SERIES_START, SERIES_END, TZ, *_TEXT, *_ADMIN_ONLY),
    (INTERVAL, GROUP_BY_USER, STAT_TYPE, SERIES_START, SERIES_END, TZ, *_TEXT),
    fill_range=True,
)
PERFORMANCE = _audiences(
    (FILTER["type"], *_TIME, *_TEXT, *_ADMIN_ONLY, GROUP_BY_ADMIN),
    (FILTER["type"], *_TIME, *_TEXT, GROUP_BY_USER),
)
EXPORT = _audiences((FORMAT, *ADMIN_FILTERS), (FORMAT, *USER_FILTERS))
USAGE = ByAudience(
    ParamTable((DATA_START, DATA_END, DATA_USERNAME, TZ, DEFAULT_TIME), fill_range=True),
    ParamTable(
        (DATA_START, DATA_END, TZ, DEFAULT_TIME),
        fill_range=True,
        max_span=SELF_MAX_SPAN,
        span_message=SELF_SPAN_MESSAGE,
    ),
)

#: every route's table, in the document's order of its routes
TABLES: tuple[ParamTable, ...] = (
    *LIST.tables,
    *SEARCH.tables,
    TOKEN_LOOKUP,
    DELETE,
    *STAT.tables,
    *SERIES.tables,
    *PERFORMANCE.tables,
    *USAGE.tables,
    *EXPORT.tables,
)


def _every_parameter() -> dict[str, Param]:
    every: dict[str, Param] = {}
    for table in TABLES:
        for param in table.params:
            if every.setdefault(param.ref, param) != param:
                raise ValueError(f"two parameters are called {param.ref!r} in the document")
    return every


#: every parameter of every route once, by its name among the document's parameters
PARAMETERS = _every_parameter()
