"""The newer gateway builds' log API extras: the user stat's total_* and today_* (local
midnight in GATELOG_TIME_ZONE or `tz`), the token lookup's key in Authorization,
`keyword` on /api/log/self, and the channel id as "channel" on admin items only."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from tests.conftest import ADMIN, WRITER, ingest, log_row, truncate_all, user_headers

NOW = 1_793_600_000  # 2026-11-02 05:33:20 UTC
KEY = "Ab3dEfGh1jKlMn0pQrStUvWxYz0123456789abcdefghijkl"


def midnight(now: int, tz: str) -> int:
    local = datetime.fromtimestamp(now, ZoneInfo(tz))
    return int(local.replace(hour=0, minute=0, second=0).timestamp())


row_strategy = st.builds(
    lambda user, offset, kind, quota: log_row(
        user_id=user, created_at=NOW - offset, type=kind, quota=quota
    ),
    st.sampled_from([7, 8]),
    st.one_of(st.integers(0, 3 * 86400), st.sampled_from([0, 1, 19800, 20000, 86400])),
    st.sampled_from([2, 2, 1, 5]),
    st.integers(0, 10**6),
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(row_strategy, max_size=30),
    zone=st.sampled_from(["UTC", "Asia/Kolkata", "America/New_York", "Pacific/Kiritimati"]),
    by_setting=st.booleans(),
)
def test_stat_totals_and_today_equal_brute_force(
    engine: Any, settings: Any, rows: Any, zone: str, by_setting: bool
) -> None:
    import asyncio

    async def body() -> None:
        await truncate_all(engine)
        app_settings = replace(settings, time_zone=zone) if by_setting else settings
        app = create_app(app_settings, store=engine, clock=lambda: float(NOW))
        async with TestClient(TestServer(app)) as client:
            if rows:
                response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
                assert response.status == 200, await response.text()
            params = {} if by_setting else {"tz": zone}
            # a filter that the extra figures ignore, as the gateway does
            params["model_name"] = "no-such-model"
            response = await client.get(
                "/api/log/self/stat", params=params, headers=user_headers(7)
            )
            data = (await response.json())["data"]
        mine = [r for r in rows if r["user_id"] == 7 and r["type"] == 2]
        today = [r for r in mine if r["created_at"] >= midnight(NOW, zone)]
        assert data["total_requests"] == len(mine)
        assert data["total_quota"] == sum(r["quota"] for r in mine)
        assert data["today_requests"] == len(today)
        assert data["today_quota"] == sum(r["quota"] for r in today)
        assert data["requests"] == 0  # the filtered figures did take the filter

    asyncio.run(body())


@pytest.fixture
async def seeded(store: Any, settings: Any) -> Any:
    async with TestClient(TestServer(create_app(settings, store=store))) as client:
        await ingest(
            client,
            [
                log_row(user_id=7, token_id=3, channel_id=4, content="hello upstream"),
                log_row(user_id=7, token_id=3, channel_id=5, content="other", model_name="claude"),
                log_row(user_id=8, token_id=9, channel_id=4, content="hello too"),
            ],
        )  # fmt: skip
        response = await client.post(
            "/api/internal/tokens",
            json=[{"id": 3, "key": "sk-" + KEY, "name": "t", "user_id": 7, "status": 1}],
            headers=WRITER,
        )
        assert response.status == 200, await response.text()
        yield client


@pytest.mark.parametrize(
    "header", [KEY, "Bearer " + KEY, "Bearer sk-" + KEY, "sk-" + KEY + "-12", "bearer " + KEY]
)
async def test_token_lookup_takes_the_key_in_authorization(seeded: Any, header: str) -> None:
    response = await seeded.get("/api/log/token", headers={"Authorization": header})
    body = await response.json()
    assert response.status == 200, body
    assert len(body["data"]) == 2
    assert all("channel" not in item for item in body["data"])


async def test_token_lookup_refuses_a_wrong_key_in_authorization(seeded: Any) -> None:
    for header in ("Bearer " + KEY[:-1], "sk-x" + KEY, ""):
        response = await seeded.get("/api/log/token", headers={"Authorization": header})
        assert response.status in (400, 404)
        assert (await response.json())["data"] is None


async def test_keyword_on_my_list(seeded: Any) -> None:
    response = await seeded.get(
        "/api/log/self", params={"keyword": "HELLO"}, headers=user_headers(7)
    )
    data = (await response.json())["data"]
    assert data["total"] == 1
    assert [item["content"] for item in data["items"]] == ["hello upstream"]
    response = await seeded.get(
        "/api/log/self", params={"keyword": "consume"}, headers=user_headers(7)
    )
    assert (await response.json())["data"]["total"] == 2


async def test_channel_id_as_channel_on_admin_items_only(seeded: Any) -> None:
    response = await seeded.get("/api/log/", headers=ADMIN)
    items = (await response.json())["data"]["items"]
    assert sorted(item["channel"] for item in items) == [4, 4, 5]
    assert all(item["channel"] == item["channel_id"] for item in items)
    response = await seeded.get("/api/log/search", params={"keyword": "hello"}, headers=ADMIN)
    assert sorted(item["channel"] for item in (await response.json())["data"]) == [4, 4]
    response = await seeded.get("/api/log/self", headers=user_headers(7))
    for item in (await response.json())["data"]["items"]:
        assert "channel" not in item and "channel_id" not in item


async def test_upstream_request_id_is_stored_and_filters_my_list(client: Any) -> None:
    rows = [
        log_row(user_id=7, upstream_request_id="up-a", content="first", quota=5),
        log_row(user_id=7, upstream_request_id="up-b", content="second", quota=7),
        log_row(user_id=8, upstream_request_id="up-a", content="someone else", quota=11),
        log_row(user_id=7, content="no upstream id", quota=13),
    ]
    await ingest(client, rows)
    response = await client.get(
        "/api/log/self", params={"upstream_request_id": "up-a"}, headers=user_headers(7)
    )
    data = (await response.json())["data"]
    assert data["total"] == 1
    assert [(i["content"], i["upstream_request_id"]) for i in data["items"]] == [("first", "up-a")]
    # every row keeps its own value, '' when the gateway sent none
    response = await client.get("/api/log/", headers=ADMIN)
    items = (await response.json())["data"]["items"]
    stored = {i["content"]: i["upstream_request_id"] for i in items}
    assert stored == {r["content"]: r.get("upstream_request_id", "") for r in rows}
    # admins filter on it too, across users
    response = await client.get("/api/log/", params={"upstream_request_id": "up-a"}, headers=ADMIN)
    assert sorted(i["user_id"] for i in (await response.json())["data"]["items"]) == [7, 8]
    # the stat with the filter is read from the raw rows, not from a rollup that lacks it
    response = await client.get(
        "/api/log/self/stat", params={"upstream_request_id": "up-b"}, headers=user_headers(7)
    )
    assert (await response.json())["data"]["quota"] == 7


async def test_upstream_request_id_too_long_is_refused_by_ingest(client: Any) -> None:
    response = await client.post(
        "/api/internal/logs", json=[log_row(upstream_request_id="x" * 257)], headers=WRITER
    )
    body = await response.json()
    assert response.status == 400 and "upstream_request_id" in body["message"]
    response = await client.get("/api/log/", headers=ADMIN)
    assert (await response.json())["data"]["total"] == 0
