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
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from .errors import BadRequest, InvalidParameter
from .params import MAX_TIMESTAMP, LogFilter, get_raw
from .stats import _range_sql
from .store import Store

CONSUME = 2
HOUR = 3600
#: the longest range /api/data/self answers, and new-api's own refusal of a longer one
SELF_MAX_SPAN = 30 * 86400
SELF_SPAN_MESSAGE = "时间跨度不能超过 1 个月"


def check_self_span(start: int, end: int) -> None:
    """A user's range is at most :data:`SELF_MAX_SPAN`, refused in new-api's words."""
    if end - start > SELF_MAX_SPAN:
        raise BadRequest(SELF_SPAN_MESSAGE)


#: the rollup is per minute; any zone's hour lies within this much of the UTC hour
_SLACK = 86400


@lru_cache(maxsize=1)
def zone_names() -> frozenset[str]:
    """The IANA zones accepted as ``tz`` (the system's tz database; each is known to the
    engine's own copy too)."""
    return frozenset(available_timezones())


def get_tz(query: Any, default: str) -> str:
    """The IANA zone of the ``tz`` parameter (or the default), checked."""
    raw = get_raw(query, "tz")
    if raw is None or raw.strip() == "":
        return default
    name = raw.strip()
    if name not in zone_names():
        raise InvalidParameter(
            "tz", f"unknown time zone {name[:40]!r}; use an IANA name such as Asia/Shanghai"
        )
    return name


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
    params.update({"tz": tz, "start": start, "end": end})
    # the coarse bounds prune partitions; the bucket condition is the exact one
    coarse = _range_sql(
        "minute", max(0, start - _SLACK), min(MAX_TIMESTAMP, end + HOUR + _SLACK), "coarse", params
    )
    keys = "model_name, bucket" + (", user_id, username" if per_user else "")
    sql = (
        "SELECT model_name, bucket, sum(requests) AS n, sum(quota) AS q, "
        "sum(prompt_tokens) + sum(completion_tokens) AS t"
        + (", user_id, username" if per_user else "")
        + " FROM (SELECT *, toUInt32(toStartOfHour(minute, {tz:String})) AS bucket "
        f"FROM logs_minute WHERE {where} AND {coarse}) "
        "WHERE bucket >= {start:UInt32} AND bucket <= {end:UInt32} "
        f"GROUP BY {keys} HAVING n != 0 "
        f"ORDER BY bucket, model_name{', user_id, username' if per_user else ''}"
    )
    rows = (await store.query(sql, params)).rows
    out: list[dict[str, Any]] = []
    for number, row in enumerate(rows, start=1):
        item: dict[str, Any] = {
            "model_name": row[0],
            "created_at": int(row[1]),
            "count": int(row[2]),
            "quota": int(row[3]),
            "token_used": int(row[4]),
        }
        if per_user:
            item = {"id": number, "user_id": int(row[5]), "username": row[6], **item}
        out.append(item)
    return out
