"""Stats and series: exact against brute force over the raw rows, for random rows, filters
and ranges (edges on and off minute boundaries, rows in the last 60 seconds), plus the
range split, the retried-batch case and the parameter rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.stats import Split, split_range
from tests import brute_stats
from tests.conftest import ADMIN, WRITER, log_row, truncate_all, user_headers

BASE = 1_790_000_000 // 60 * 60  # a fixed minute; "now" is a few seconds after it
USERS = [1, 2, 3]
MODELS = ["gpt-4", "gpt-4o", "claude-3"]
TOKENS = ["t1", "t2"]
GROUPS = ["default", "vip"]
NAMES = ["alice", "bob"]

HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        (None, None, Split((None, None), ())),
        (120, 240, Split((120, 240), ())),
        (121, 240, Split((180, 240), ((121, 180),))),
        (120, 239, Split((120, 180), ((180, 239),))),
        (121, 239, Split(None, ((121, 239),))),
        (61, 119, Split(None, ((61, 119),))),
        (61, 121, Split(None, ((61, 121),))),
        (59, 121, Split((60, 120), ((59, 60), (120, 121)))),
        (None, 130, Split((None, 120), ((120, 130),))),
        (70, None, Split((120, None), ((70, 120),))),
        (100, 100, Split(None, ())),
    ],
)
def test_split_range(lo: int | None, hi: int | None, expected: Split) -> None:
    assert split_range(lo, hi) == expected


@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 3600), (1, 3599), (59, 61), (61, 62), (None, 125), (125, None)]
)
def test_split_covers_each_second_once(lo: int | None, hi: int | None) -> None:
    split = split_range(lo, hi)
    window = range(0 if lo is None else lo, 4000 if hi is None else hi)
    covered: list[int] = []
    for e_lo, e_hi in split.edges:
        assert e_lo is not None and e_hi is not None
        assert e_hi - e_lo < 60, "an edge is never a whole minute"
        covered.extend(range(e_lo, e_hi))
    if split.whole is not None:
        w_lo, w_hi = split.whole
        assert all(b is None or b % 60 == 0 for b in (w_lo, w_hi))
        covered.extend(
            s for s in window if (w_lo is None or s >= w_lo) and (w_hi is None or s < w_hi)
        )
    assert sorted(covered) == list(window)


now_strategy = st.builds(
    lambda second, fraction: BASE + second + fraction,
    st.sampled_from([0, 1, 30, 59, 60, 61]),
    st.sampled_from([0.0, 0.5, 0.999]),
)


def near(now: float) -> st.SearchStrategy[int]:
    """Seconds that matter: around the 60-second window's start, around now, on and off
    minute boundaries in the last minutes, and anywhere in the two days before."""
    window_start = int(now) - 60
    return st.one_of(
        st.sampled_from([window_start - 1, window_start, window_start + 1, int(now), int(now) + 1]),
        st.builds(
            lambda minute, second: BASE + minute * 60 + second,
            st.integers(-4, 1),
            st.sampled_from([0, 1, 59]),
        ),
        st.integers(BASE - 200, BASE + 70),
        st.integers(BASE - 2 * 86400, BASE + 70),
    )


def row_strategy(now: float) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(USERS),
            "created_at": near(now),
            "type": st.sampled_from([1, 2, 2, 2, 5]),
            "username": st.sampled_from(NAMES),
            "token_name": st.sampled_from(TOKENS),
            "model_name": st.sampled_from(MODELS),
            "quota": st.integers(-(10**6), 10**9),
            "prompt_tokens": st.integers(0, 10**6),
            "completion_tokens": st.integers(0, 10**6),
            "channel_id": st.sampled_from([1, 2]),
            "group": st.sampled_from(GROUPS),
            "request_id": st.sampled_from(["", "req-1", "req-2"]),
        }
    ).map(lambda fields: log_row(**fields))


def instant(now: float, rows: list[dict[str, Any]]) -> st.SearchStrategy[int]:
    """Range edges: a row's second or one either side of it, or any second near now."""
    if not rows:
        return near(now)
    on_rows = st.builds(
        lambda r, d: r["created_at"] + d, st.sampled_from(rows), st.sampled_from([-1, 0, 0, 1])
    )
    return st.one_of(on_rows, near(now), on_rows)


@st.composite
def scenario(draw: st.DrawFn, max_rows: int = 40) -> tuple[float, list[dict[str, Any]], Any]:
    """(now, rows, instants): rows placed around a drawn "now"."""
    now = draw(now_strategy)
    rows = draw(st.lists(row_strategy(now), min_size=1, max_size=max_rows))
    return now, rows, instant(now, rows)


DIMENSIONS: dict[str, st.SearchStrategy[Any]] = {
    "type": st.sampled_from([0, 1, 2, 5]),
    "username": st.sampled_from(NAMES),
    "token_name": st.sampled_from(TOKENS),
    "model_name": st.sampled_from([*MODELS, "gpt-4%", "%o"]),
    "channel": st.sampled_from([1, 2]),
    "group": st.sampled_from(GROUPS),
    "request_id": st.just("req-1"),
}


def filters(draw: st.DrawFn, instants: Any, count: int) -> list[dict[str, Any]]:
    """Time bounds most of the time, and at most two other filters (more would leave
    too few matching rows to tell a right answer from a wrong one)."""
    out = []
    for _ in range(count):
        q: dict[str, Any] = {}
        for bound in ("start_timestamp", "end_timestamp"):
            if draw(st.integers(0, 3)):
                q[bound] = draw(instants)
        for name in draw(st.lists(st.sampled_from(sorted(DIMENSIONS)), max_size=2)):
            q[name] = draw(DIMENSIONS[name])
        if q.get("start_timestamp", 0) > q.get("end_timestamp", 2**32):
            q["start_timestamp"], q["end_timestamp"] = q["end_timestamp"], q["start_timestamp"]
        out.append(q)
    return out


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def with_clock(engine: Any, app_settings: Any, now: float, body: Any) -> Any:
    await truncate_all(engine)
    app = create_app(app_settings, store=engine, clock=lambda: now)
    async with TestClient(TestServer(app)) as client:
        return await body(client)


def params(q: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in q.items()}


async def post_rows(client: TestClient[Any, Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert response.status == 200, await response.text()


async def get_data(client: TestClient[Any, Any], path: str, q: dict[str, Any], headers: Any) -> Any:
    response = await client.get(path, params=params(q), headers=headers)
    body = await response.json()
    assert response.status == 200, body
    return body["data"]


@HYPOTHESIS
@given(data=st.data(), case=scenario())
def test_stat_equals_brute_force(engine: Any, settings: Any, data: Any, case: Any) -> None:
    now, rows, instants = case
    queries = filters(data.draw, instants, data.draw(st.integers(1, 3)))

    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        await assert_stats_exact(client, rows, queries, now)

    run(with_clock(engine, settings, now, body))


async def assert_stats_exact(
    client: TestClient[Any, Any], rows: list[dict[str, Any]], queries: Any, now: float
) -> None:
    """The admin stat and every user's own stat equal a scan of ``rows`` for each query
    (a user's query keeps its username/channel, which the user route ignores)."""
    for q in queries:
        got = await get_data(client, "/api/log/stat", q, ADMIN)
        assert got == brute_stats.stat(rows, q, None, now), q
        user_q = {k: v for k, v in q.items() if k not in ("username", "channel")}
        for uid in USERS:
            got = await get_data(client, "/api/log/self/stat", q, user_headers(uid))
            assert got == brute_stats.self_stat(rows, user_q, uid, now), (uid, q)


def series_queries(draw: st.DrawFn, instants: Any, now: float) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        q = draw(
            st.fixed_dictionaries(
                {
                    "interval": st.sampled_from(["minute", "hour", "day"]),
                    "start_timestamp": instants,
                },
                optional={
                    "end_timestamp": instants,
                    "group_by": st.sampled_from(
                        ["model_name", "token_name", "group", "username", "channel"]
                    ),
                    "type": st.sampled_from([0, 2, 5]),
                    "model_name": st.sampled_from(["gpt-4", "gpt-4%"]),
                    "token_name": st.sampled_from(TOKENS),
                    "request_id": st.just("req-1"),
                },
            )
        )
        end = q.get("end_timestamp", int(now))
        if q["start_timestamp"] > end:
            if "end_timestamp" not in q:
                q["start_timestamp"] = end
            else:
                q["start_timestamp"], q["end_timestamp"] = end, q["start_timestamp"]
        out.append(q)
    return out


def check_series(
    data: dict[str, Any], rows: Any, q: dict[str, Any], uid: int | None, now: float
) -> None:
    total, groups = brute_stats.series(rows, q, uid, now, q["interval"], q.get("group_by"))
    assert data["buckets"] == total, q
    if q.get("group_by"):
        got = {s["key"]: s["buckets"] for s in data["series"]}
        assert got == groups, q
        requests = [s["requests"] for s in data["series"]]
        assert requests == sorted(requests, reverse=True)
    else:
        assert "series" not in data


@HYPOTHESIS
@given(data=st.data(), case=scenario())
def test_series_equals_brute_force(engine: Any, settings: Any, data: Any, case: Any) -> None:
    now, rows, instants = case
    queries = series_queries(data.draw, instants, now)

    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        for q in queries:
            check_series(await get_data(client, "/api/log/series", q, ADMIN), rows, q, None, now)
            user_q = {
                k: v
                for k, v in q.items()
                if k != "group_by" or v in ("model_name", "token_name", "group")
            }
            for uid in USERS:
                data = await get_data(client, "/api/log/self/series", user_q, user_headers(uid))
                check_series(data, rows, user_q, uid, now)

    run(with_clock(engine, settings, now, body))


async def test_retried_batch_counts_once(client: Any, store: Any) -> None:
    rows = [log_row(created_at=BASE - 600 + i * 7, quota=10 + i) for i in range(50)]
    for _ in range(2):  # the same body twice: a gateway retrying after a lost answer
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert response.status == 200
    raw = (await store.query("SELECT count() FROM logs")).scalar()
    rollup = (await store.query("SELECT sum(requests) FROM logs_minute")).scalar()
    assert raw == rollup == 50
    q = {"start_timestamp": BASE - 3600, "end_timestamp": BASE}
    data = await get_data(client, "/api/log/stat", q, ADMIN)
    assert data["requests"] == 50
    assert data["quota"] == sum(r["quota"] for r in rows)


async def test_range_is_inclusive_at_both_ends_mid_minute(client: Any) -> None:
    inside = [BASE - 3600 + 17, BASE - 3600 + 18, BASE - 1800, BASE - 61, BASE - 60 + 5]
    outside = [BASE - 3600 + 16, BASE - 60 + 6]
    await post_rows(client, [log_row(created_at=t, quota=1) for t in inside + outside])
    q = {"start_timestamp": BASE - 3600 + 17, "end_timestamp": BASE - 60 + 5}
    data = await get_data(client, "/api/log/stat", q, ADMIN)
    assert data["requests"] == data["quota"] == len(inside)
    one_second = {"start_timestamp": BASE - 60 + 5, "end_timestamp": BASE - 60 + 5}
    assert (await get_data(client, "/api/log/stat", one_second, ADMIN))["requests"] == 1


async def test_stat_type_defaults_to_consume_and_zero_means_consume(client: Any) -> None:
    now = BASE + 10
    rows = [
        log_row(created_at=BASE - 100, type=2, quota=5),
        log_row(created_at=BASE - 100, type=1, quota=1000),  # a top-up
        log_row(created_at=BASE - 100, type=5, quota=70),
    ]
    await post_rows(client, rows)
    q = {"start_timestamp": BASE - 3600, "end_timestamp": now}
    assert (await get_data(client, "/api/log/stat", q, ADMIN))["quota"] == 5
    assert (await get_data(client, "/api/log/stat", {**q, "type": 0}, ADMIN))["quota"] == 5
    assert (await get_data(client, "/api/log/stat", {**q, "type": 1}, ADMIN))["quota"] == 1000
    assert (await get_data(client, "/api/log/stat", {**q, "type": 5}, ADMIN))["quota"] == 70


async def test_quota_and_rpm_are_independent(settings: Any, store: Any) -> None:
    """Gateway bug #7106: the second query zeroed quota. Here each figure stands alone."""
    now = BASE + 30.0
    rows = [
        log_row(created_at=BASE - 7200, quota=300, prompt_tokens=1, completion_tokens=2),
        log_row(created_at=BASE + 5, quota=40, prompt_tokens=10, completion_tokens=20),
    ]

    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        q = {"start_timestamp": BASE - 86400, "end_timestamp": BASE - 3600}
        data = await get_data(client, "/api/log/stat", q, ADMIN)
        assert data == {
            "quota": 300,
            "rpm": 1,
            "tpm": 30,
            "requests": 1,
            "prompt_tokens": 1,
            "completion_tokens": 2,
        }

    await with_clock_async(store, settings, now, body)


async def with_clock_async(store: Any, app_settings: Any, now: float, body: Any) -> None:
    app = create_app(app_settings, store=store, clock=lambda: now)
    async with TestClient(TestServer(app)) as client:
        await body(client)


@pytest.mark.parametrize(
    ("path", "query", "named"),
    [
        ("/api/log/series", {"start_timestamp": "9", "end_timestamp": "3"}, "'start_timestamp'"),
        ("/api/log/series", {"start_timestamp": "100", "interval": "week"}, "'interval'"),
        ("/api/log/series", {"start_timestamp": "100", "group_by": "ip"}, "'group_by'"),
        ("/api/log/self/series", {"start_timestamp": "100", "group_by": "channel"}, "'group_by'"),
        ("/api/log/self/series", {"start_timestamp": "100", "group_by": "username"}, "'group_by'"),
        ("/api/log/stat", {"type": "9"}, "'type'"),
        ("/api/log/self/stat", {"start_timestamp": "9", "end_timestamp": "3"}, "'start_timestamp'"),
    ],
)
async def test_bad_stat_and_series_parameters(
    client: Any, path: str, query: dict[str, str], named: str
) -> None:
    headers = user_headers(3) if "/self/" in path else ADMIN
    response = await client.get(path, params=query, headers=headers)
    body = await response.json()
    assert response.status == 400 and body["success"] is False
    assert named in body["message"]


async def test_too_many_buckets_is_400_saying_the_limit(make_client: Any) -> None:
    client = await make_client(max_series_buckets=100)
    q = {"start_timestamp": str(BASE - 101 * 60), "end_timestamp": str(BASE), "interval": "minute"}
    response = await client.get("/api/log/series", params=q, headers=ADMIN)
    body = await response.json()
    assert response.status == 400
    assert "102 buckets" in body["message"] and "limit of 100" in body["message"]
    q["interval"] = "hour"
    response = await client.get("/api/log/series", params=q, headers=ADMIN)
    assert response.status == 200


async def test_too_many_group_cells_is_400(make_client: Any) -> None:
    client = await make_client(max_series_buckets=10)
    rows = [log_row(created_at=BASE - 30, model_name=f"m{i}") for i in range(6)]
    await post_rows(client, rows)
    q = {"start_timestamp": str(BASE - 60), "end_timestamp": str(BASE), "interval": "minute"}
    response = await client.get("/api/log/series", params=q, headers=ADMIN)
    assert response.status == 200
    response = await client.get(
        "/api/log/series", params={**q, "group_by": "model_name"}, headers=ADMIN
    )
    body = await response.json()
    assert response.status == 400 and "limit of 10" in body["message"]


async def test_users_stat_only_their_own_rows(client: Any) -> None:
    rows = [log_row(user_id=7, quota=3), log_row(user_id=8, quota=50, username="eve")]
    await post_rows(client, rows)
    # a user's username/channel parameters are ignored, never widening the scope
    q = {"username": "eve", "channel": "1"}
    assert (await get_data(client, "/api/log/self/stat", q, user_headers(7)))["quota"] == 3
    assert (await get_data(client, "/api/log/stat", {}, ADMIN))["quota"] == 53


async def test_stat_and_series_need_credentials(client: Any) -> None:
    for path in ("/api/log/stat", "/api/log/series?start_timestamp=1"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers=user_headers(3))).status == 403
    for path in ("/api/log/self/stat", "/api/log/self/series?start_timestamp=1"):
        assert (await client.get(path)).status == 401


async def test_series_defaults_to_the_last_day_in_hours(settings: Any, store: Any) -> None:
    now = BASE + 0.5
    rows = [log_row(created_at=BASE - 86400 + 1, quota=2), log_row(created_at=BASE - 86401)]

    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        data = await get_data(client, "/api/log/series", {}, ADMIN)
        assert (data["interval"], data["start_timestamp"], data["end_timestamp"]) == (
            "hour",
            BASE - 86400,
            BASE,
        )
        assert len(data["buckets"]) == 25 and data["group_by"] is None
        assert sum(b["requests"] for b in data["buckets"]) == 1
        # a start after now, without an end: the series of that one instant
        later = {"start_timestamp": BASE + 7200, "interval": "minute"}
        data = await get_data(client, "/api/log/self/series", later, user_headers(7))
        assert data["end_timestamp"] == BASE + 7200 and len(data["buckets"]) == 1

    await with_clock_async(store, settings, now, body)
