"""The gateway dashboard's usage data (``/api/data/``, ``/api/data/self``) and the time
zone of buckets and "today".

new-api keeps hourly rows per user and model (its ``quota_data`` table) and answers
``{"model_name", "created_at", "count", "quota", "token_used"}`` for the hours whose
start ``created_at`` lies in ``[start_timestamp, end_timestamp]``; ``count`` is the
consume logs (type 2) of that hour and model, ``token_used`` their prompt + completion
tokens. Here the same rows come from the per-minute rollup: an hour is whole minutes
(in every zone, the offsets being whole minutes), so no raw row is read.

Hours are the hours of the ``tz`` zone (default ``GATELOG_TIME_ZONE``, UTC unless set),
so that in a zone offset by a half hour the buckets still start on its full hours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .params import MAX_TIMESTAMP, LogFilter
from .stats import _range_sql, zone_floor, zone_grain
from .store import Store

CONSUME = 2
HOUR = 3600
#: the longest range /api/data/self answers, and new-api's own refusal of a longer one
#: (the route's parameter table applies it: service.routeparams)
SELF_MAX_SPAN = 30 * 86400
SELF_SPAN_MESSAGE = "时间跨度不能超过 1 个月"


#: the rollup is per minute; any zone's hour lies within this much of the UTC hour
_SLACK = 86400


def local_midnight(now: float, tz: str) -> int:
    """The Unix second at which the local day of ``now`` began in ``tz``."""
    local = datetime.fromtimestamp(int(now), ZoneInfo(tz))
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp())


async def usage_rows(
    store: Store,
    start: int,
    end: int,
    tz: str,
    *,
    user_id: int | None = None,
    username: str | None = None,
) -> list[dict[str, Any]]:
    """Hourly rows per model (and per user when ``user_id`` or ``username`` is given)
    for the local hours starting in ``[start, end]``."""
    per_user = user_id is not None or username is not None
    flt = LogFilter(type=CONSUME, user_id=user_id, username=username)
    where, params = flt.where(time=False)
    lo, hi = max(0, start - _SLACK), min(MAX_TIMESTAMP, end + HOUR + _SLACK)
    # The engine sums UTC-aligned buckets of the zone's grain (an hour where its offsets
    # are whole hours, else a quarter hour or a minute); each lies in one local hour,
    # found here from its start (zone_floor). The engine's toStartOfHour(t, tz) is not
    # used: around Lord Howe's half-hour DST change it answered starts 30 minutes off.
    grain = zone_grain(tz, lo, hi)
    params["grain"] = grain
    coarse = _range_sql("minute", lo, hi, "coarse", params)
    users = ", user_id, username" if per_user else ""
    sql = (
        "SELECT model_name, intDiv(toUInt32(minute), {grain:UInt32}) * {grain:UInt32} AS g, "
        "sum(requests) AS n, sum(quota) AS q, sum(prompt_tokens) + sum(completion_tokens) AS t"
        f"{users} FROM logs_minute WHERE {where} AND {coarse} GROUP BY model_name, g{users}"
    )
    zone = ZoneInfo(tz)
    hours: dict[int, int] = {}
    sums: dict[tuple[Any, ...], list[int]] = {}
    for model, g, n, q, t, *who in (await store.query(sql, params)).rows:
        g = int(g)
        if g not in hours:
            hours[g] = zone_floor(g, HOUR, zone)
        bucket = hours[g]
        if not start <= bucket <= end:
            continue
        cell = sums.setdefault((bucket, model, *who), [0, 0, 0])
        cell[0] += int(n)
        cell[1] += int(q)
        cell[2] += int(t)
    out: list[dict[str, Any]] = []
    for key in sorted(k for k, cell in sums.items() if cell[0] != 0):
        bucket, model, *who = key
        count, quota, tokens = sums[key]
        item: dict[str, Any] = {
            "model_name": model,
            "created_at": bucket,
            "count": count,
            "quota": quota,
            "token_used": tokens,
        }
        if per_user:
            item = {"id": len(out) + 1, "user_id": int(who[0]), "username": who[1], **item}
        out.append(item)
    return out
