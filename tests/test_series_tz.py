"""Series in a time zone (`tz`, default GATELOG_TIME_ZONE): buckets start at the zone's
local hours and midnights, across DST changes and in zones offset by a half hour, and
their sums equal a brute-force scan that buckets each row by its local wall clock."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from tests.conftest import ADMIN, WRITER, log_row, truncate_all, user_headers

# Instants near a change of each zone's offset (or none), in the recent past.
ZONES = {
    "America/New_York": 1_793_512_800,  # 2026-11-01 06:00 UTC: 02:00 EDT -> 01:00 EST
    "Australia/Lord_Howe": 1_775_314_800,  # 2026-04-04 15:00 UTC: +11 -> +10:30
    "Asia/Kolkata": 1_793_600_000,  # +5:30 all year
    "UTC": 1_793_600_000,
}
SPAN = 2 * 86400


def brute(
    rows: list[dict[str, Any]], lo: int, hi: int, interval: str, tz: str
) -> dict[Any, list[int]]:
    """Sums per local bucket, keyed by what a wall clock shows: the local date for days,
    the hour's first second for hours (the row's instant less its local minutes and
    seconds), the minute for minutes."""
    zone = ZoneInfo(tz)
    out: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        t = r["created_at"]
        if not lo <= t <= hi or r["type"] != 2:
            continue
        local = datetime.fromtimestamp(t, zone)
        if interval == "day":
            key: Any = local.date()
        elif interval == "hour":
            key = t - local.minute * 60 - local.second
        else:
            key = t - local.second
        out[key][0] += 1
        out[key][1] += r["quota"]
    return dict(out)


def offset(at: int, zone: ZoneInfo) -> int:
    delta = datetime.fromtimestamp(at, zone).utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


def check(data: dict[str, Any], rows: list[dict[str, Any]], lo: int, hi: int, interval: str,
          tz: str) -> None:  # fmt: skip
    zone = ZoneInfo(tz)
    buckets = data["buckets"]
    starts = [b["timestamp"] for b in buckets]
    assert starts == sorted(set(starts))
    # (where clocks fall back by a half hour, the next hour's start precedes the end of
    # the one before: the range's first second may lie after the second start)
    assert starts[0] <= lo and starts[-1] <= hi
    got: dict[Any, list[int]] = {}
    for b in buckets:
        local = datetime.fromtimestamp(b["timestamp"], zone)
        if interval == "day":
            assert (local.hour, local.minute, local.second) == (0, 0, 0), local
            key: Any = local.date()
        else:
            # a local hour's first second, at the offset in force in that hour (where
            # clocks fall back by 30 minutes, the hour after the change begins at an
            # instant that read hh:30 before it)
            s0 = b["timestamp"]
            offsets = {offset(s0 + quarter * 900, zone) for quarter in range(3)}
            whole = 60 if interval == "minute" else 3600
            assert any((s0 + off) % whole == 0 for off in offsets), local
            key = s0
        if b["requests"]:
            got[key] = [b["requests"], b["quota"]]
    if interval == "day":  # one bucket per local date, none skipped
        dates = [datetime.fromtimestamp(s, zone).date() for s in starts]
        assert all((b - a).days == 1 for a, b in zip(dates, dates[1:], strict=False))
    assert got == brute(rows, lo, hi, interval, tz)


rows_strategy = st.lists(
    st.builds(
        lambda offset, kind, quota, user: (offset, kind, quota, user),
        st.one_of(st.integers(0, SPAN), st.sampled_from([0, 1800, 3599, 3600, 5400, 86400])),
        st.sampled_from([2, 2, 2, 5]),
        st.integers(0, 10**5),
        st.sampled_from([7, 8]),
    ),
    max_size=40,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    tz=st.sampled_from(sorted(ZONES)),
    raw=rows_strategy,
    interval=st.sampled_from(["hour", "day", "hour", "minute"]),
    edges=st.tuples(st.integers(0, SPAN // 2), st.integers(SPAN // 2, SPAN)),
    by_setting=st.booleans(),
)
def test_series_buckets_follow_the_zone(
    engine: Any, settings: Any, tz: str, raw: Any, interval: str, edges: Any, by_setting: bool
) -> None:
    base = ZONES[tz] - SPAN // 2
    rows = [log_row(user_id=u, created_at=base + o, type=k, quota=q) for o, k, q, u in raw]
    lo, hi = base + edges[0], base + edges[1]
    if interval == "minute":
        hi = min(hi, lo + 3 * 3600)

    async def body() -> None:
        await truncate_all(engine)
        app_settings = replace(settings, time_zone=tz) if by_setting else settings
        app = create_app(app_settings, store=engine)
        async with TestClient(TestServer(app)) as client:
            if rows:
                response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
                assert response.status == 200, await response.text()
            params = {"start_timestamp": str(lo), "end_timestamp": str(hi), "interval": interval}
            if not by_setting:
                params["tz"] = tz
            response = await client.get("/api/log/series", params=params, headers=ADMIN)
            body = await response.json()
            assert response.status == 200, body
            check(body["data"], rows, lo, hi, interval, tz)
            response = await client.get(
                "/api/log/self/series", params=params, headers=user_headers(7)
            )
            body = await response.json()
            mine = [r for r in rows if r["user_id"] == 7]
            check(body["data"], mine, lo, hi, interval, tz)

    asyncio.run(body())


async def test_series_refuses_an_unknown_zone(client: Any) -> None:
    response = await client.get(
        "/api/log/series", params={"start_timestamp": "100", "tz": "Mars/Olympus"}, headers=ADMIN
    )
    body = await response.json()
    assert response.status == 400 and "'tz'" in body["message"] and body["data"] is None


async def test_a_series_up_to_the_last_second_in_a_zone(client: Any) -> None:
    end = 2**32 - 1  # the last second a DateTime holds: the range is open at the top
    for interval, tz in [("day", "Asia/Kolkata"), ("hour", "America/New_York"), ("minute", "UTC")]:
        response = await client.get(
            "/api/log/series",
            params={"end_timestamp": str(end), "interval": interval, "tz": tz},
            headers=ADMIN,
        )
        body = await response.json()
        assert response.status == 200, body
        starts = [b["timestamp"] for b in body["data"]["buckets"]]
        assert starts[0] <= end - 86400 and starts[-1] <= end
