"""Brute-force stats, series and export answers over raw rows, for property tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests import brute

FIGURES = ("requests", "quota", "prompt_tokens", "completion_tokens")
SIZES = {"minute": 60, "hour": 3600, "day": 86400}
GROUP_COLUMN = {"channel": "channel_id"}


def sums(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out = dict.fromkeys(FIGURES, 0)
    for r in rows:
        out["requests"] += 1
        out["quota"] += r["quota"]
        out["prompt_tokens"] += r["prompt_tokens"]
        out["completion_tokens"] += r["completion_tokens"]
    return out


def with_type(q: Mapping[str, Any]) -> dict[str, Any]:
    """Stats and series count consumption (2) unless another type is named."""
    return {**q, "type": q.get("type") or 2}


def stat(
    rows: list[Mapping[str, Any]], q: Mapping[str, Any], user_id: int | None, now: float
) -> dict[str, int]:
    q = with_type(q)
    untimed = {k: v for k, v in q.items() if k not in ("start_timestamp", "end_timestamp")}
    in_range = sums(r for r in rows if brute.matches(r, q, user_id=user_id))
    recent = sums(
        r
        for r in rows
        if r["created_at"] >= int(now) - 60 and brute.matches(r, untimed, user_id=user_id)
    )
    return {
        "quota": in_range["quota"],
        "rpm": recent["requests"],
        "tpm": recent["prompt_tokens"] + recent["completion_tokens"],
        "requests": in_range["requests"],
        "prompt_tokens": in_range["prompt_tokens"],
        "completion_tokens": in_range["completion_tokens"],
    }


def series(
    rows: list[Mapping[str, Any]],
    q: Mapping[str, Any],
    user_id: int | None,
    now: float,
    interval: str,
    group_by: str | None,
) -> tuple[list[dict[str, int]], dict[Any, list[dict[str, int]]]]:
    """(total buckets, {group key: buckets}), zero-filled, buckets aligned to UTC."""
    size = SIZES[interval]
    start = q["start_timestamp"]
    end = q.get("end_timestamp") or int(now)
    first = start // size * size
    count = (end // size * size - first) // size + 1

    def zero() -> list[dict[str, int]]:
        return [{"timestamp": first + i * size, **dict.fromkeys(FIGURES, 0)} for i in range(count)]

    total = zero()
    groups: dict[Any, list[dict[str, int]]] = {}
    q = {**with_type(q), "end_timestamp": end}
    for r in rows:
        if not brute.matches(r, q, user_id=user_id):
            continue
        index = (r["created_at"] - first) // size
        targets = [total[index]]
        if group_by:
            key = r[GROUP_COLUMN.get(group_by, group_by)]
            targets.append(groups.setdefault(key, zero())[index])
        for target in targets:
            for name, value in sums([r]).items():
                target[name] += value
    return total, groups


def self_stat(
    rows: list[Mapping[str, Any]],
    q: Mapping[str, Any],
    user_id: int,
    now: float,
    tz: str = "UTC",
) -> dict[str, int]:
    """The user stat: :func:`stat` and the newer gateway's total_* / today_* figures
    (the user's consume logs of all time and since local midnight in ``tz``)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    local = datetime.fromtimestamp(int(now), ZoneInfo(tz))
    midnight = int(local.replace(hour=0, minute=0, second=0).timestamp())
    mine = [r for r in rows if r["user_id"] == user_id and r["type"] == 2]
    today = [r for r in mine if r["created_at"] >= midnight]
    return {
        **stat(rows, q, user_id, now),
        "total_requests": len(mine),
        "total_quota": sum(r["quota"] for r in mine),
        "today_requests": len(today),
        "today_quota": sum(r["quota"] for r in today),
    }
