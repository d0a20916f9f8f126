"""``/api/data/`` and ``/api/data/self`` (the gateway dashboard's hourly usage rows):
for random logs and ranges, in several zones (half-hour and 45-minute offsets, a DST
zone), the answer equals brute force over the raw rows; the routes with and without the
trailing slash; the 30-day limit of /self with the gateway's message; admin only."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from tests.conftest import ADMIN, WRITER, ingest, log_row, truncate_all, user_headers

# 2026-11-01 05:00 UTC is New York's fall-back hour: a day of 25 hours is in range.
BASE = 1_793_505_600 - 86400
SPAN = 3 * 86400
ZONES = ["UTC", "Asia/Shanghai", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York"]
USERS = [(1, "alice"), (2, "bob"), (3, "bob")]  # two users share a name
MODELS = ["gpt-4", "claude-3", "qwen_max"]

# times near hour edges are likely: an hour's first and last second, and the half hour
time_strategy = st.one_of(
    st.integers(BASE, BASE + SPAN),
    st.builds(
        lambda hour, edge: BASE + hour * 1800 + edge,
        st.integers(0, SPAN // 1800 - 1),
        st.sampled_from([-1, 0, 1, 59, 60]),
    ),
)
row_strategy = st.builds(
    lambda user, created_at, kind, model, quota, prompt, completion: log_row(
        user_id=user[0], username=user[1], created_at=created_at, type=kind,
        model_name=model, quota=quota, prompt_tokens=prompt, completion_tokens=completion,
    ),
    st.sampled_from(USERS), time_strategy, st.sampled_from([2, 2, 2, 1, 5]),
    st.sampled_from(MODELS), st.integers(0, 10**9), st.integers(0, 10**6),
    st.integers(0, 10**6),
)  # fmt: skip
range_strategy = st.tuples(
    st.one_of(time_strategy, st.integers(BASE - 7200, BASE)),
    st.one_of(time_strategy, st.integers(BASE + SPAN, BASE + SPAN + 7200)),
).map(sorted)

HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def local_hour(t: int, tz: str) -> int:
    local = datetime.fromtimestamp(t, ZoneInfo(tz))
    return int(local.replace(minute=0, second=0).timestamp())


def brute(
    rows: list[dict[str, Any]], start: int, end: int, tz: str, per_user: bool, **match: Any
) -> list[dict[str, Any]]:
    cells: dict[tuple[Any, ...], dict[str, int]] = defaultdict(
        lambda: {"count": 0, "quota": 0, "token_used": 0}
    )
    for r in rows:
        hour = local_hour(r["created_at"], tz)
        if r["type"] != 2 or not start <= hour <= end:
            continue
        if any(r[k] != v for k, v in match.items()):
            continue
        key = (hour, r["model_name"]) + ((r["user_id"], r["username"]) if per_user else ())
        cell = cells[key]
        cell["count"] += 1
        cell["quota"] += r["quota"]
        cell["token_used"] += r["prompt_tokens"] + r["completion_tokens"]
    out = []
    for key in sorted(cells):
        item: dict[str, Any] = {"model_name": key[1], "created_at": key[0], **cells[key]}
        if per_user:
            item.update(user_id=key[2], username=key[3])
        out.append(item)
    return out


def without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


@HYPOTHESIS
@given(
    rows=st.lists(row_strategy, max_size=40),
    ranges=st.lists(st.tuples(range_strategy, st.sampled_from(ZONES)), min_size=1, max_size=3),
)
def test_data_equals_brute_force(engine: Any, settings: Any, rows: Any, ranges: Any) -> None:
    async def body() -> None:
        await truncate_all(engine)
        async with TestClient(TestServer(create_app(settings, store=engine))) as client:
            if rows:
                response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
                assert response.status == 200, await response.text()
            for (start, end), tz in ranges:
                params = {"start_timestamp": str(start), "end_timestamp": str(end), "tz": tz}
                response = await client.get("/api/data/", params=params, headers=ADMIN)
                body = await response.json()
                assert response.status == 200, body
                assert body["data"] == brute(rows, start, end, tz, per_user=False)
                response = await client.get(
                    "/api/data", params={**params, "username": "bob"}, headers=ADMIN
                )
                data = (await response.json())["data"]
                assert without_ids(data) == brute(
                    rows, start, end, tz, per_user=True, username="bob"
                )
                assert len({item["id"] for item in data}) == len(data)
                if end - start > 30 * 86400:
                    continue
                for user_id, _name in USERS:
                    response = await client.get(
                        "/api/data/self", params=params, headers=user_headers(user_id)
                    )
                    data = (await response.json())["data"]
                    assert without_ids(data) == brute(
                        rows, start, end, tz, per_user=True, user_id=user_id
                    )

    asyncio.run(body())


@pytest.fixture
async def usage_client(store: Any, settings: Any) -> Any:
    async with TestClient(TestServer(create_app(settings, store=store))) as client:
        await ingest(
            client,
            [
                log_row(user_id=7, username="bob", created_at=BASE + 10, quota=5),
                log_row(user_id=8, username="carol", created_at=BASE + 20, quota=7),
            ],
        )
        yield client


async def test_both_spellings_and_the_default_zone(usage_client: Any, settings: Any) -> None:
    params = {
        "start_timestamp": str(BASE),
        "end_timestamp": str(BASE + 3600),
        "default_time": "hour",
    }
    answers = []
    for path in ("/api/data/", "/api/data"):
        response = await usage_client.get(path, params=params, headers=ADMIN)
        answers.append((await response.json())["data"])
    assert (
        answers[0]
        == answers[1]
        == [{"model_name": "gpt-4", "created_at": BASE, "count": 2, "quota": 12, "token_used": 300}]
    )
    for path in ("/api/data/self", "/api/data/self/"):
        response = await usage_client.get(path, params=params, headers=user_headers(7))
        data = (await response.json())["data"]
        assert without_ids(data) == [
            {"user_id": 7, "username": "bob", "model_name": "gpt-4", "created_at": BASE,
             "count": 1, "quota": 5, "token_used": 150}
        ]  # fmt: skip


async def test_self_refuses_more_than_30_days(usage_client: Any) -> None:
    month = 30 * 86400
    ok = {"start_timestamp": str(BASE - month), "end_timestamp": str(BASE)}
    response = await usage_client.get("/api/data/self", params=ok, headers=user_headers(7))
    assert response.status == 200
    too_long = {"start_timestamp": str(BASE - month - 1), "end_timestamp": str(BASE)}
    response = await usage_client.get("/api/data/self", params=too_long, headers=user_headers(7))
    body = await response.json()
    assert response.status == 400
    assert body == {"success": False, "message": "时间跨度不能超过 1 个月", "data": None}
    # the admin view has no such limit
    response = await usage_client.get("/api/data/", params=too_long, headers=ADMIN)
    assert response.status == 200


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"start_timestamp": "x"}, "start_timestamp"),
        ({"start_timestamp": "20", "end_timestamp": "10"}, "start_timestamp"),
        ({"end_timestamp": str(2**32)}, "end_timestamp"),
    ],
)
async def test_bad_parameters(usage_client: Any, params: dict[str, str], name: str) -> None:
    for path, headers in (("/api/data/", ADMIN), ("/api/data/self", user_headers(7))):
        response = await usage_client.get(path, params=params, headers=headers)
        body = await response.json()
        assert response.status == 400 and body["data"] is None
        assert f"'{name}'" in body["message"]


async def test_admin_only_and_signed_in_only(usage_client: Any) -> None:
    response = await usage_client.get("/api/data/", headers=user_headers(7))
    assert response.status == 403
    for path in ("/api/data/", "/api/data/self"):
        response = await usage_client.get(path)
        assert response.status == 401
