"""Stats and dashboard series: exact sums, served from the per-minute rollup.

A time range ``[start, end]`` (Unix seconds, both inclusive) splits into the whole
minutes it covers, read from ``logs_minute`` (schema/003), and at most two partial edge
minutes, read from the raw ``logs`` rows of those seconds only. The answer equals a scan
of the raw rows, and its cost grows with the minutes in range, not with the rows.

Filters that the rollup cannot serve (``request_id``: it is not a rollup dimension, and
it selects a handful of rows) are answered from ``logs`` alone.

The rollup is always read with ``sum() ... GROUP BY``: its rows are folded only when
parts merge, and corrections from history deletes are negative rows (service/deletion.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .errors import InvalidParameter
from .params import MAX_TIMESTAMP, LogFilter
from .store import Store

ROLLUP = "logs_minute"
MINUTE = 60
#: the type a stat or series counts when the request names none (or 0): consumption,
#: as the gateway's own stat does (it ignores `type` altogether).
DEFAULT_STAT_TYPE = 2
#: the window of ``rpm`` and ``tpm``: rows with ``created_at >= now - 60`` (the gateway's rule)
RECENT_SECONDS = 60

INTERVALS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
# group_by values -> the column (same name in `logs` and `logs_minute`); an allowlist.
GROUP_KEYS_USER: dict[str, str] = {
    "model_name": "model_name",
    "token_name": "token_name",
    "group": "`group`",
}
GROUP_KEYS_ADMIN: dict[str, str] = {
    **GROUP_KEYS_USER,
    "username": "username",
    "channel": "channel_id",
}
FIGURES = ("requests", "quota", "prompt_tokens", "completion_tokens")

_ROLLUP_SUMS = (
    "sum(requests) AS requests, sum(quota) AS quota, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
)
_RAW_SUMS = (
    "toInt64(count()) AS requests, sum(quota) AS quota, "
    "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens"
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
    return flt.request_id is None and flt.token_id is None and not flt.extra


def _range_sql(column: str, lo: Bound, hi: Bound, name: str, params: dict[str, Any]) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{column} >= toDateTime({{{name}_lo:UInt32}}, 'UTC')")
        params[f"{name}_lo"] = lo
    if hi is not None:
        parts.append(f"{column} < toDateTime({{{name}_hi:UInt32}}, 'UTC')")
        params[f"{name}_hi"] = hi
    return " AND ".join(parts) or "1"


def _selects(
    flt: LogFilter, split: Split, rollup_cols: str, raw_cols: str, tail: str = ""
) -> tuple[list[str], dict[str, Any]]:
    """One SELECT over the rollup's whole minutes and one over the raw edges."""
    where, params = flt.where(time=False)
    selects = []
    if split.whole is not None:
        cond = _range_sql("minute", *split.whole, "whole", params)
        selects.append(f"SELECT {rollup_cols} FROM {ROLLUP} WHERE {where} AND {cond} {tail}")
    if split.edges:
        cond = " OR ".join(
            f"({_range_sql('created_at', lo, hi, f'edge{i}', params)})"
            for i, (lo, hi) in enumerate(split.edges)
        )
        selects.append(f"SELECT {raw_cols} FROM logs WHERE {where} AND ({cond}) {tail}")
    return selects, params


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
    split = split_range(lo, hi, rollup_serves(flt))
    if split.empty:
        return Totals()
    selects, params = _selects(flt, split, _ROLLUP_SUMS, _RAW_SUMS)
    sql = f"SELECT {_OUTER_SUMS} FROM ({' UNION ALL '.join(selects)})"
    row = (await store.query(sql, params)).rows[0]
    return Totals(*(int(value) for value in row))


def stat_filter(flt: LogFilter) -> LogFilter:
    """Stats and series count consumption unless the request names another type."""
    return replace(flt, type=flt.type if flt.type is not None else DEFAULT_STAT_TYPE)


async def stat(store: Store, flt: LogFilter, now: float) -> dict[str, int]:
    """``quota``, ``requests`` and the token sums over the filter's time range, and
    ``rpm``/``tpm`` over the last 60 seconds (the time range ignored). The two windows
    are separate queries run side by side; neither can blank the other's figures."""
    flt = stat_filter(flt)
    in_range, recent = await asyncio.gather(
        totals(store, flt, *half_open(flt.start, flt.end)),
        totals(store, flt, int(now) - RECENT_SECONDS, None),
    )
    return {
        "quota": in_range.quota,
        "rpm": recent.requests,
        "tpm": recent.prompt_tokens + recent.completion_tokens,
        "requests": in_range.requests,
        "prompt_tokens": in_range.prompt_tokens,
        "completion_tokens": in_range.completion_tokens,
    }


async def own_totals(store: Store, user_id: int, now: float, tz: str) -> dict[str, int]:
    """The newer gateway's extra figures of a user's stat: their consume logs of all
    time and since local midnight in ``tz`` (the request's other filters ignored, as
    the gateway does)."""
    from .usage import local_midnight

    flt = LogFilter(user_id=user_id, type=DEFAULT_STAT_TYPE)
    overall, today = await asyncio.gather(
        totals(store, flt, None, None), totals(store, flt, local_midnight(now, tz), None)
    )
    return {
        "total_requests": overall.requests,
        "total_quota": overall.quota,
        "today_requests": today.requests,
        "today_quota": today.quota,
    }


@dataclass(frozen=True)
class SeriesRequest:
    start: int
    end: int
    interval: str
    group_by: str | None = None

    @property
    def size(self) -> int:
        return INTERVALS[self.interval]

    @property
    def first_bucket(self) -> int:
        return self.start // self.size * self.size

    @property
    def bucket_count(self) -> int:
        return (self.end // self.size * self.size - self.first_bucket) // self.size + 1


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
    """Zero-filled buckets of ``request.interval`` (aligned to UTC) from ``start`` to
    ``end``; the first and last buckets hold only the part of them inside the range.
    With ``group_by``, also one series per value of that column, largest first."""
    check_series(request, max_buckets)
    flt = stat_filter(flt)
    key = group_keys[request.group_by] if request.group_by else "''"
    split = split_range(*half_open(request.start, request.end), rollup_serves(flt))
    size = "{bucket_size:UInt32}"
    rollup_cols = f"intDiv(toUInt32(minute), {size}) * {size} AS bucket, {key} AS key, " + (
        _ROLLUP_SUMS
    )
    raw_cols = f"intDiv(toUInt32(created_at), {size}) * {size} AS bucket, {key} AS key, " + (
        _RAW_SUMS
    )
    rows: Sequence[tuple[Any, ...]] = []
    if not split.empty:
        selects, params = _selects(flt, split, rollup_cols, raw_cols, "GROUP BY bucket, key")
        params["bucket_size"] = request.size
        sql = (
            f"SELECT bucket, key, {_OUTER_SUMS} FROM ({' UNION ALL '.join(selects)}) "
            # cells whose rows a history delete took out net to zero: not a group
            "GROUP BY bucket, key HAVING requests != 0 ORDER BY bucket, key"
        )
        rows = (await store.query(sql, params)).rows
    return _shape_series(request, rows, max_buckets)


def _zero_buckets(request: SeriesRequest) -> list[dict[str, int]]:
    return [
        {"timestamp": request.first_bucket + i * request.size, **dict.fromkeys(FIGURES, 0)}
        for i in range(request.bucket_count)
    ]


def _shape_series(
    request: SeriesRequest, rows: Sequence[tuple[Any, ...]], max_buckets: int
) -> dict[str, Any]:
    total = _zero_buckets(request)
    per_key: dict[Any, list[dict[str, int]]] = {}
    for bucket, key, *figures in rows:
        index = (int(bucket) - request.first_bucket) // request.size
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
                per_key[key] = _zero_buckets(request)
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
