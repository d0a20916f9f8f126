"""Stats and dashboard series: exact sums, served from rollups at several levels.

A time range ``[start, end]`` (Unix seconds, both inclusive) is covered with the
coarsest level that fits each piece (:func:`cover`): whole UTC days from a day rollup,
then whole hours at the edges from an hour rollup, whole minutes from ``logs_minute``
(schema/003), and raw seconds at the very edges from ``logs``. Each level is read from
the smallest rollup whose dimensions cover the filters (:data:`ROLLUPS`,
:func:`levels`): site-wide rollups without the per-user columns for admin views,
per-user ones otherwise. The answer equals a scan of the raw rows, and its cost grows
with the buckets in range, not with the rows.

Filters that the rollup cannot serve (``request_id``: it is not a rollup dimension, and
it selects a handful of rows) are answered from ``logs`` alone.

The rollup is always read with ``sum() ... GROUP BY``: its rows are folded only when
parts merge, and corrections from history deletes are negative rows (service/deletion.py).
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from .columns import DIMENSIONS
from .errors import InvalidParameter
from .params import MAX_TIMESTAMP, LogFilter
from .store import Store
from .timesql import compare

ROLLUP = "logs_minute"
MINUTE = 60
#: every UTC offset in use today is a multiple of a quarter hour (+5:45, +12:45)
QUARTER = 900
HOUR = 3600
DAY = 86400


@dataclass(frozen=True)
class Rollup:
    """A rollup table of ``logs``: its time column (the start of its bucket), the bucket
    size in seconds, and the dimensions it keeps (names of :class:`LogFilter` fields and
    of group-by keys). Its columns are the dimensions' columns and the four sums."""

    table: str
    time: str
    grain: int
    dims: frozenset[str]
    #: partitioned by month (``toYYYYMM``), not by day: whole days are deleted from it by
    #: negated rows (service/deletion.py), not by dropping partitions
    by_month: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(DIMENSION_COLUMNS[d] for d in DIMENSION_ORDER if d in self.dims)


#: filter/group-by names -> column (same in `logs` and in each rollup); an allowlist
DIMENSION_COLUMNS = DIMENSIONS
DIMENSION_ORDER = tuple(DIMENSION_COLUMNS)
_EVERY = frozenset(DIMENSION_COLUMNS)
_SITE = frozenset({"type", "model_name", "channel", "group"})
#: every rollup, coarsest level first and, within a level, smallest first (schema/003,
#: 010-011, 019-022); logs_minute serves every filter a rollup can serve.
ROLLUPS: tuple[Rollup, ...] = (
    Rollup("logs_day_site_m", "day", DAY, _SITE, by_month=True),
    Rollup("logs_day_m", "day", DAY, _EVERY, by_month=True),
    Rollup("logs_hour_site", "hour", HOUR, _SITE),
    Rollup(ROLLUP, "minute", MINUTE, _EVERY),
)
#: the type a stat or series counts when the request names none (or 0): consumption,
#: as the gateway's own stat does (it ignores `type` altogether).
DEFAULT_STAT_TYPE = 2
#: the window of ``rpm`` and ``tpm``: rows with ``created_at >= now - 60`` (the gateway's rule)
RECENT_SECONDS = 60

INTERVALS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
DEFAULT_INTERVAL = "hour"
# group_by values -> the column (same name in `logs` and `logs_minute`); an allowlist.
GROUP_KEYS_USER: dict[str, str] = {k: DIMENSIONS[k] for k in ("model_name", "token_name", "group")}
GROUP_KEYS_ADMIN: dict[str, str] = {
    **GROUP_KEYS_USER,
    **{k: DIMENSIONS[k] for k in ("username", "channel")},
}
FIGURES = ("requests", "quota", "prompt_tokens", "completion_tokens")

_ROLLUP_SUMS = (
    "sum(requests) AS requests, sum(quota) AS quota, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
)
# Raw rows are summed as Int128 like the rollups' cells (schema/055-058): a range may
# hold far more rows at the per-row bounds than Int64 can add up.
_RAW_SUMS = (
    "toInt64(count()) AS requests, sum(toInt128(quota)) AS quota, "
    "sum(toInt128(prompt_tokens)) AS prompt_tokens, "
    "sum(toInt128(completion_tokens)) AS completion_tokens"
)
_OUTER_SUMS = (
    "sum(requests) AS requests, sum(quota) AS quota, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
)

Bound = int | None


@dataclass(frozen=True)
class Split:
    """Where the figures of a range come from.

    ``whole``: the minutes ``[first, stop)`` read from the rollup (``None`` bounds are
    open; ``None`` itself means no whole minute). ``edges``: second ranges ``[lo, hi)``
    read from the raw rows.
    """

    whole: tuple[Bound, Bound] | None
    edges: tuple[tuple[Bound, Bound], ...]

    @property
    def empty(self) -> bool:
        return self.whole is None and not self.edges


def half_open(start: Bound, end: Bound) -> tuple[Bound, Bound]:
    """``[start, end]`` inclusive as ``[lo, hi)``; an end at the last representable
    second is open (``end + 1`` would not fit a DateTime)."""
    hi = None if end is None or end >= MAX_TIMESTAMP else end + 1
    return start, hi


def split_range(lo: Bound, hi: Bound, rollup: bool = True) -> Split:
    """Whole minutes of ``[lo, hi)`` from the rollup, the partial minutes from raw rows."""
    if lo is not None and hi is not None and lo >= hi:
        return Split(None, ())
    if not rollup:
        return Split(None, ((lo, hi),))
    first = None if lo is None else -(-lo // MINUTE) * MINUTE
    stop = None if hi is None else hi // MINUTE * MINUTE
    if first is not None and stop is not None and first >= stop:
        return Split(None, ((lo, hi),))
    edges: list[tuple[Bound, Bound]] = []
    if lo is not None and first is not None and lo < first:
        edges.append((lo, first))
    if hi is not None and stop is not None and stop < hi:
        edges.append((stop, hi))
    return Split((first, stop), tuple(edges))


def rollup_serves(flt: LogFilter) -> bool:
    """True when every condition of ``flt`` is on a rollup dimension."""
    return (
        flt.request_id is None
        and flt.upstream_request_id is None
        and flt.token_id is None
        and not flt.extra
    )


def filter_dimensions(flt: LogFilter, group_by: str | None = None) -> frozenset[str]:
    """The dimensions a rollup must keep to answer ``flt`` (and group by ``group_by``)."""
    used = {name for name in DIMENSION_ORDER if getattr(flt, name) is not None}
    if group_by is not None:
        used.add(group_by)
    return frozenset(used)


def levels(needed: frozenset[str], bucket: int | None = None) -> tuple[Rollup, ...]:
    """One rollup per time level, coarsest first: the smallest of that level whose
    dimensions cover ``needed``. With ``bucket`` (a series' bucket size in seconds,
    buckets aligned to multiples of it), only levels whose grain divides it."""
    chosen: dict[int, Rollup] = {}
    for rollup in ROLLUPS:
        if not needed <= rollup.dims or rollup.grain in chosen:
            continue
        if bucket is not None and bucket % rollup.grain:
            continue
        chosen[rollup.grain] = rollup
    return tuple(sorted(chosen.values(), key=lambda r: -r.grain))


Piece = tuple[Rollup | None, Bound, Bound]


def cover(lo: Bound, hi: Bound, chosen: Sequence[Rollup], raw_below: int = 0) -> list[Piece]:
    """``[lo, hi)`` as disjoint pieces ``(rollup, lo, hi)``: the whole buckets of the
    coarsest level in it, then, in what is left at each edge, the whole buckets of the
    next level, and so on; ``None`` for the raw seconds left at the edges. ``None``
    bounds are open (the coarsest level takes them). A stretch shorter than
    ``raw_below`` seconds that no level covers whole is read raw as one piece instead
    of being split further (see :func:`raw_below`)."""
    if lo is not None and hi is not None and lo >= hi:
        return []
    if not chosen:
        return [(None, lo, hi)]
    if lo is not None and hi is not None and hi - lo < raw_below:
        return [(None, lo, hi)]
    level, rest = chosen[0], chosen[1:]
    g = level.grain
    first = None if lo is None else -(-lo // g) * g
    stop = None if hi is None else hi // g * g
    if first is not None and stop is not None and first >= stop:
        return cover(lo, hi, rest, raw_below)
    out: list[Piece] = []
    if lo is not None and first is not None and lo < first:
        out += cover(lo, first, rest, raw_below)
    out.append((level, first, stop))
    if hi is not None and stop is not None and stop < hi:
        out += cover(stop, hi, rest, raw_below)
    return out


def raw_below(flt: LogFilter) -> int:
    """How long a stretch at the edge of a range may be and still be read from the raw
    rows rather than split into finer rollup buckets.

    Each table a statement names costs the engine about 2-5 ms to plan whatever it then
    reads (chDB 26.9 at 1M rows: `EXPLAIN PLAN` alone of a one-table sum takes 2.4 ms on
    a rollup and 4.9 ms on `logs`, its execution about 1 ms; docs/benchmarks.md), so a
    finer level pays only where it replaces many raw rows. The raw rows of a stretch are
    a contiguous read: through the time-ordered projection `logs_by_time_sums` (schema/023)
    for site-wide filters, through the primary key `(user_id, created_at)` for one user.
    So stretches under an hour are read raw (at most an hour of the whole site's logs at
    each edge), and for one user's filter stretches under a day (one user's logs of a
    day); `logs_minute` then serves only minute buckets and longer stretches."""
    return DAY if flt.user_id is not None else HOUR


def _range_sql(column: str, lo: Bound, hi: Bound, name: str, params: dict[str, Any]) -> str:
    parts = []
    if lo is not None:
        parts.append(compare(column, ">=", f"{name}_lo"))
        params[f"{name}_lo"] = lo
    if hi is not None:
        parts.append(compare(column, "<", f"{name}_hi"))
        params[f"{name}_hi"] = hi
    return " AND ".join(parts) or "1"


def _selects(
    flt: LogFilter,
    pieces: Sequence[Piece],
    sums: tuple[str, str],
    key: str | None = None,
    bucket: str | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """One SELECT per table the pieces read (rollups and the raw edges), each with the
    filter's conditions and its pieces' time ranges; with ``bucket`` (a parameter
    placeholder of the bucket size) and ``key`` (a dimension's column), grouped by
    bucket and key (buckets aligned to multiples of their size, from the Unix epoch)."""
    where, params = flt.where(time=False)
    by_table: dict[str, tuple[Rollup | None, list[tuple[Bound, Bound]]]] = {}
    for rollup, lo, hi in pieces:
        name = rollup.table if rollup else "logs"
        by_table.setdefault(name, (rollup, []))[1].append((lo, hi))
    selects = []
    for n, (table, (rollup, ranges)) in enumerate(by_table.items()):
        column = rollup.time if rollup else "created_at"
        cond = " OR ".join(
            f"({_range_sql(column, lo, hi, f't{n}r{i}', params)})"
            for i, (lo, hi) in enumerate(ranges)
        )
        cols = sums[0] if rollup else sums[1]
        tail = ""
        if bucket is not None:
            start = f"intDiv(toUInt32({column}), {bucket}) * {bucket}"
            cols = f"{start} AS bucket, {key or chr(39) * 2} AS key, {cols}"
            tail = " GROUP BY bucket, key"
        selects.append(f"SELECT {cols} FROM {table} WHERE {where} AND ({cond}){tail}")
    return selects, params


def plan_pieces(
    flt: LogFilter, lo: Bound, hi: Bound, group_by: str | None = None, bucket: int | None = None
) -> list[Piece]:
    """How ``[lo, hi)`` is read for ``flt``: :func:`cover` with the :func:`levels` that
    serve the filter (raw rows only when a condition is on no rollup's dimension)."""
    if not rollup_serves(flt):
        return cover(lo, hi, ())
    return cover(lo, hi, levels(filter_dimensions(flt, group_by), bucket), raw_below(flt))


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    quota: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIGURES}


async def totals(store: Store, flt: LogFilter, lo: Bound, hi: Bound) -> Totals:
    """The four sums over ``[lo, hi)`` and the filter's other conditions, exactly."""
    return (await totals_of(store, [Window(flt, lo, hi)]))[0]


class Window(NamedTuple):
    """A range ``[lo, hi)`` of a filter whose four sums :func:`totals_of` answers;
    ``raw``: read from the raw rows only (a window of the last minute, whose rows a
    contiguous read finds faster than the engine plans a rollup's statement)."""

    flt: LogFilter
    lo: Bound
    hi: Bound
    raw: bool = False


async def totals_of(store: Store, windows: Sequence[Window]) -> list[Totals]:
    """:func:`totals` of several windows at once: one statement per window and table
    its pieces read, all sent together, each with its own parameters, and summed per
    window here. Separate statements rather than one ``UNION ALL``: the engine
    plans a statement's tables one after the other (2-5 ms each), and separate
    statements are planned and run on both cores at once."""
    statements: list[tuple[int, str, dict[str, Any]]] = []
    for n, (flt, lo, hi, raw) in enumerate(windows):
        pieces = cover(lo, hi, ()) if raw else plan_pieces(flt, lo, hi)
        if pieces:
            selects, params = _selects(flt, pieces, (_ROLLUP_SUMS, _RAW_SUMS))
            statements += [(n, select, params) for select in selects]
    answers = await asyncio.gather(*(store.query(sql, params) for _, sql, params in statements))
    sums = [[0] * len(FIGURES) for _ in windows]
    for (n, _, _), answer in zip(statements, answers, strict=True):
        for row in answer.rows:
            for i, value in enumerate(row):
                sums[n][i] += int(value)
    return [Totals(*cell) for cell in sums]


async def bucket_counts(
    store: Store, flt: LogFilter, lo: Bound, hi: Bound, size: int
) -> list[tuple[int, int]]:
    """``(bucket start, rows)`` of ``[lo, hi)`` for ``flt`` in buckets of ``size`` seconds
    (UTC-aligned), newest first, empty buckets left out; from the rollups (the caller
    checks :func:`rollup_serves`) and the raw edges, exactly."""
    pieces = plan_pieces(flt, lo, hi, None, size)
    if not pieces:
        return []
    selects, params = _selects(flt, pieces, (_ROLLUP_SUMS, _RAW_SUMS), None,
                               "{bucket_size:UInt32}")  # fmt: skip
    params["bucket_size"] = size
    # each table's statement on its own, at once (see totals_of), the buckets summed here
    answers = await asyncio.gather(
        *(store.query(f"SELECT bucket, requests FROM ({select})", params) for select in selects)
    )
    counts: dict[int, int] = {}
    for answer in answers:
        for bucket, rows in answer.rows:
            counts[int(bucket)] = counts.get(int(bucket), 0) + int(rows)
    return sorted(((b, n) for b, n in counts.items() if n), reverse=True)


def count_bucket(flt: LogFilter) -> int:
    """The bucket size for :func:`bucket_counts` of a list: whole UTC days. Their counts
    come from the day rollups (site-wide: a few dozen rows a day) and the edges of the
    range; the page bounded to the newest days that hold it then reads those days in
    time order (the ``logs_by_time_sums`` projection, schema/023) and stops after the page,
    so finer buckets would cost more to count than they save."""
    return DAY


def zone_grain(tz: str, lo: int, hi: int) -> int:
    """The coarsest rollup grain from which day (or hour) buckets of time zone ``tz``
    over ``[lo, hi)`` can be summed exactly: ``HOUR`` when the zone's UTC offset is a
    whole number of hours all through the range (local midnights are then UTC hour
    starts: the hour rollups serve, e.g. Europe/Berlin, America/New_York with their DST
    shifts), else ``QUARTER`` when every offset is a whole number of quarter hours
    (Asia/Kolkata +5:30, Asia/Kathmandu +5:45, Lord Howe's half-hour DST: the minute
    rollup serves, its minutes summed per quarter hour), else ``MINUTE``. Pass it as ``bucket`` to
    :func:`plan_pieces` / :func:`levels` so that only levels of that grain or finer are
    read, and bucket the rows with the zone's own local day. The offset is looked at
    every 3 hours and at both ends (zone changes are hours apart), so a range of N days
    costs 8N ``utcoffset`` calls. Raises ``zoneinfo.ZoneInfoNotFoundError`` for an
    unknown zone (the caller's 400)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    step = 3 * HOUR
    grain = HOUR
    for at in [*range(lo, hi, step), max(lo, hi - 1)]:
        offset = datetime.fromtimestamp(at, zone).utcoffset()
        seconds = 0 if offset is None else int(offset.total_seconds())
        if seconds % QUARTER:
            return MINUTE
        if seconds % HOUR:
            grain = QUARTER
    return grain


def stat_filter(flt: LogFilter) -> LogFilter:
    """Stats and series count consumption unless the request names another type."""
    return replace(flt, type=flt.type if flt.type is not None else DEFAULT_STAT_TYPE)


def stat_windows(flt: LogFilter, now: float) -> list[Window]:
    """The two windows of a stat: the filter's range, and the last 60 seconds (rpm/tpm;
    open-ended, since rows may be stamped a little ahead of this clock, and read raw)."""
    return [
        Window(flt, *half_open(flt.start, flt.end)),
        Window(flt, int(now) - RECENT_SECONDS, None, raw=True),
    ]


def stat_figures(in_range: Totals, recent: Totals) -> dict[str, int]:
    return {
        "quota": in_range.quota,
        "rpm": recent.requests,
        "tpm": recent.prompt_tokens + recent.completion_tokens,
        "requests": in_range.requests,
        "prompt_tokens": in_range.prompt_tokens,
        "completion_tokens": in_range.completion_tokens,
    }


async def stat(store: Store, flt: LogFilter, now: float) -> dict[str, int]:
    """``quota``, ``requests`` and the token sums over the filter's time range, and
    ``rpm``/``tpm`` over the last 60 seconds (the time range ignored), together
    (:func:`totals_of`)."""
    flt = stat_filter(flt)
    in_range, recent = await totals_of(store, stat_windows(flt, now))
    return stat_figures(in_range, recent)


def own_windows(user_id: int, now: float, tz: str) -> list[Window]:
    """The windows of :func:`own_totals`: the user's consume logs of all time and since
    local midnight in ``tz``."""
    from .usage import local_midnight

    flt = LogFilter(user_id=user_id, type=DEFAULT_STAT_TYPE)
    return [Window(flt, None, None), Window(flt, local_midnight(now, tz), None)]


def own_figures(overall: Totals, today: Totals) -> dict[str, int]:
    return {
        "total_requests": overall.requests,
        "total_quota": overall.quota,
        "today_requests": today.requests,
        "today_quota": today.quota,
    }


async def own_totals(store: Store, user_id: int, now: float, tz: str) -> dict[str, int]:
    """The newer gateway's extra figures of a user's stat: their consume logs of all
    time and since local midnight in ``tz`` (the request's other filters ignored, as
    the gateway does)."""
    return own_figures(*await totals_of(store, own_windows(user_id, now, tz)))


async def self_stat(
    store: Store, flt: LogFilter, user_id: int, now: float, tz: str
) -> dict[str, int]:
    """A user's stat: :func:`stat` and :func:`own_totals` together (:func:`totals_of`)."""
    flt = stat_filter(flt)
    in_range, recent, overall, today = await totals_of(
        store, [*stat_windows(flt, now), *own_windows(user_id, now, tz)]
    )
    return {**stat_figures(in_range, recent), **own_figures(overall, today)}


@dataclass(frozen=True)
class SeriesRequest:
    start: int
    end: int
    interval: str
    group_by: str | None = None
    #: the IANA zone whose hours and days the buckets follow
    tz: str = "UTC"

    @property
    def size(self) -> int:
        return INTERVALS[self.interval]

    @property
    def zoned(self) -> bool:
        """Buckets follow ``tz`` rather than multiples of their size (a minute is the
        same minute in every zone: every offset in use is whole minutes)."""
        return self.tz != "UTC" and self.size != MINUTE

    @property
    def bucket_count(self) -> int:
        """At least the number of buckets (exact for UTC-aligned ones), known before the
        local buckets are listed."""
        size = self.size
        return (self.end // size * size - self.start // size * size) // size + 1

    def bucket_starts(self) -> list[int]:
        """The start of every bucket from the one holding ``start`` to the one holding
        ``end``, in Unix seconds."""
        size = self.size
        if not self.zoned:
            first = self.start // size * size
            return list(range(first, self.end // size * size + 1, size))
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(self.tz)
        starts = [zone_floor(self.start, size, zone)]
        # Local hours last 30 to 90 minutes and local days 23 or 25 hours around DST
        # changes (or less when a zone moved): probe in quarter hours, which every
        # offset change is made of, from well inside the current bucket.
        ahead = size // 2 if size == HOUR else 20 * HOUR
        while True:
            at = starts[-1] + ahead
            following = zone_floor(at, size, zone)
            while following <= starts[-1]:
                at += 15 * MINUTE
                following = zone_floor(at, size, zone)
            if following > self.end:
                return starts
            starts.append(following)

    def grain(self, lo: int, hi: int) -> int:
        """The bucket size to choose rollup levels with (:func:`levels`): the interval,
        or for local buckets the coarsest grain aligned with ``tz`` (:func:`zone_grain`)."""
        if not self.zoned:
            return self.size
        return min(self.size, zone_grain(self.tz, lo, hi))


def zone_floor(at: int, size: int, zone: Any) -> int:
    """The start of the local hour (``size`` HOUR) or day (DAY) of ``zone`` holding the
    Unix second ``at``."""
    from datetime import datetime

    local = datetime.fromtimestamp(at, zone)
    if size == DAY:
        return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())
    offset = local.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    return at - (at + seconds) % size


def check_series(request: SeriesRequest, max_buckets: int) -> None:
    count = request.bucket_count
    if count > max_buckets:
        raise InvalidParameter(
            "interval",
            f"{count} buckets of one {request.interval} is more than the limit of "
            f"{max_buckets}; choose a longer interval or a shorter range",
        )


async def series(
    store: Store,
    flt: LogFilter,
    request: SeriesRequest,
    group_keys: dict[str, str],
    max_buckets: int,
) -> dict[str, Any]:
    """Zero-filled buckets of ``request.interval`` (the hours and days of ``request.tz``)
    from ``start`` to ``end``; the first and last buckets hold only the part of them
    inside the range.
    With ``group_by``, also one series per value of that column, largest first."""
    check_series(request, max_buckets)
    flt = stat_filter(flt)
    key = group_keys[request.group_by] if request.group_by else None
    lo, hi = half_open(request.start, request.end)
    # An end at the last representable second leaves the range open; a series needs a
    # last bucket, and no row can be stored that late (ingest refuses the future).
    hi = MAX_TIMESTAMP if hi is None else hi
    assert lo is not None
    # The engine sums UTC-aligned buckets of ``grain`` seconds (the interval itself in
    # UTC); every local bucket start of the zone is a multiple of it, so each one lies in
    # one local bucket, which _shape_series finds by its start. (The engine's own
    # toStartOfHour(t, tz) is not used: around Lord Howe's half-hour DST change it
    # answered starts 30 minutes off the zone's local hours.)
    grain = request.grain(lo, hi)
    pieces = plan_pieces(flt, lo, hi, request.group_by, grain)
    rows: Sequence[tuple[Any, ...]] = []
    if pieces:
        selects, params = _selects(flt, pieces, (_ROLLUP_SUMS, _RAW_SUMS), key,
                                   "{bucket_size:UInt32}")  # fmt: skip
        params["bucket_size"] = grain
        sql = (
            f"SELECT bucket, key, {_OUTER_SUMS} FROM ({' UNION ALL '.join(selects)}) "
            # cells whose rows a history delete took out net to zero: not a group
            "GROUP BY bucket, key HAVING requests != 0 ORDER BY bucket, key"
        )
        rows = (await store.query(sql, params)).rows
    return _shape_series(request, rows, max_buckets)


def _zero_buckets(starts: Sequence[int]) -> list[dict[str, int]]:
    return [{"timestamp": start, **dict.fromkeys(FIGURES, 0)} for start in starts]


def _shape_series(
    request: SeriesRequest, rows: Sequence[tuple[Any, ...]], max_buckets: int
) -> dict[str, Any]:
    starts = request.bucket_starts()
    if len(starts) > max_buckets:  # local days and hours: a DST hour or a moved zone
        raise InvalidParameter(
            "interval",
            f"{len(starts)} buckets of one {request.interval} is more than the limit of "
            f"{max_buckets}; choose a longer interval or a shorter range",
        )
    total = _zero_buckets(starts)
    per_key: dict[Any, list[dict[str, int]]] = {}
    for bucket, key, *figures in rows:
        # the bucket whose start is the latest at or before the row's bucket start
        index = bisect_right(starts, int(bucket)) - 1
        if not 0 <= index < len(total):  # pragma: no cover - the range condition excludes it
            continue
        targets = [total[index]]
        if request.group_by:
            if key not in per_key:
                cells = (len(per_key) + 2) * len(total)
                if cells > max_buckets:
                    raise InvalidParameter(
                        "group_by",
                        f"{len(per_key) + 1} or more groups x {len(total)} buckets (and the "
                        f"total) is more than the limit of {max_buckets} buckets; filter, "
                        "choose a longer interval or a shorter range",
                    )
                per_key[key] = _zero_buckets(starts)
            targets.append(per_key[key][index])
        for target in targets:
            for name, value in zip(FIGURES, figures, strict=True):
                target[name] += int(value)
    data: dict[str, Any] = {
        "interval": request.interval,
        "start_timestamp": request.start,
        "end_timestamp": request.end,
        "group_by": request.group_by,
        "buckets": total,
    }
    if request.group_by:
        groups = []
        for key, buckets in per_key.items():
            sums = {name: sum(b[name] for b in buckets) for name in FIGURES}
            groups.append({"key": key, **sums, "buckets": buckets})
        groups.sort(key=lambda g: (-g["requests"], str(g["key"])))
        data["series"] = groups
    return data
