"""Latency and error insights (/api/log/performance): against brute force over the raw
rows, computed here from the definitions in the issue (nearest rank over the values
themselves, frt read from the `other` JSON with Python's own parser), for random rows,
filters, ranges with edges inside minutes, group_by, retried batches and history deletes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import strategies as st

from service.performance import FRT_RATIO, frt_representative
from tests import brute
from tests.conftest import ADMIN, WRITER, log_row, user_headers
from tests.test_stats import (
    HYPOTHESIS,
    MODELS,
    NAMES,
    TOKENS,
    USERS,
    filters,
    get_data,
    instant,
    near,
    now_strategy,
    post_rows,
    run,
    with_clock,
)

GROUP_COLUMN = {"channel": "channel_id"}
USER_GROUPS = ("model_name", "token_name", "group")
ADMIN_GROUPS = (*USER_GROUPS, "username", "channel")
FRT_TOLERANCE = 0.02  # what the issue allows

other_strategy = st.one_of(
    st.floats(min_value=0.01, max_value=2e6, allow_nan=False).map(lambda v: {"frt": v}),
    st.integers(1, 100_000).map(lambda v: {"frt": v, "model_ratio": 15.0}),
    st.sampled_from([{"frt": -1000}, {"frt": 0}, {}, {"frt": -3.5}]),
).map(json.dumps) | st.sampled_from(["", "not json", "[1, 2]"])


def row_strategy(now: float) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "user_id": st.sampled_from(USERS),
            "created_at": near(now),
            "type": st.sampled_from([1, 2, 2, 2, 2, 5]),
            "username": st.sampled_from(NAMES),
            "token_name": st.sampled_from(TOKENS),
            "model_name": st.sampled_from(MODELS),
            "use_time": st.one_of(st.integers(0, 12), st.integers(0, 600)),
            "channel_id": st.sampled_from([1, 2]),
            "group": st.sampled_from(["default", "vip"]),
            "request_id": st.sampled_from(["", "req-1"]),
            "other": other_strategy,
        }
    ).map(lambda fields: log_row(**fields))


@st.composite
def scenario(draw: st.DrawFn) -> tuple[float, list[dict[str, Any]], Any]:
    now = draw(now_strategy)
    rows = draw(st.lists(row_strategy(now), min_size=1, max_size=40))
    return now, rows, instant(now, rows)


# ---------------------------------------------------------------- brute force


def frt_of(row: Mapping[str, Any]) -> float | None:
    """The row's first-token time if it is a positive JSON number in `other`."""
    try:
        other = json.loads(row["other"])
    except ValueError:
        return None
    value = other.get("frt") if isinstance(other, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def percentile(values: list[float], p: int) -> float | None:
    """Nearest rank, literally: the smallest value with at least p% of values <= it."""
    if not values:
        return None
    return min(v for v in values if 100 * sum(1 for x in values if x <= v) >= p * len(values))


def brute_figures(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    consume = [r for r in rows if r["type"] == 2]
    errors = sum(1 for r in rows if r["type"] == 5)
    frts = [f for r in consume if (f := frt_of(r)) is not None]
    attempts = len(consume) + errors
    return {
        "requests": len(consume),
        "errors": errors,
        "error_rate": errors / attempts if attempts else None,
        "use_time": {
            f"p{p}": percentile([r["use_time"] for r in consume], p) for p in (50, 95, 99)
        },
        "frt_ms": {f"p{p}": percentile(frts, p) for p in (50, 95, 99)},
    }


def assert_figures(got: Mapping[str, Any], want: Mapping[str, Any], context: Any) -> None:
    assert got["requests"] == want["requests"], context
    assert got["errors"] == want["errors"], context
    if want["error_rate"] is None:
        assert got["error_rate"] is None, context
    else:
        assert math.isclose(got["error_rate"], want["error_rate"], rel_tol=1e-12), context
    assert got["use_time"] == want["use_time"], context  # exact
    for name, exact in want["frt_ms"].items():
        value = got["frt_ms"][name]
        if exact is None:
            assert value is None, (context, name)
        else:
            assert value is not None and abs(value - exact) <= FRT_TOLERANCE * exact, (
                context, name, value, exact,
            )  # fmt: skip


def check(
    data: Mapping[str, Any],
    rows: list[Mapping[str, Any]],
    q: Mapping[str, Any],
    uid: int | None,
) -> None:
    chosen = [r for r in rows if brute.matches(r, q, user_id=uid)]
    assert_figures(data["total"], brute_figures(chosen), q)
    group_by = q.get("group_by")
    if not group_by:
        assert data["groups"] == []
        return
    column = GROUP_COLUMN.get(group_by, group_by)
    keys = {r[column] for r in chosen if r["type"] in (2, 5)}
    assert {g["key"] for g in data["groups"]} == keys, q
    for group in data["groups"]:
        mine = [r for r in chosen if r[column] == group["key"]]
        assert_figures(group, brute_figures(mine), (q, group["key"]))
    attempts = [g["requests"] + g["errors"] for g in data["groups"]]
    assert attempts == sorted(attempts, reverse=True)


async def check_all(
    client: TestClient[Any, Any], rows: list[dict[str, Any]], queries: list[dict[str, Any]]
) -> None:
    for q in queries:
        check(await get_data(client, "/api/log/performance", q, ADMIN), rows, q, None)
        user_q = {k: v for k, v in q.items() if k not in ("username", "channel")}
        if user_q.get("group_by") not in (None, *USER_GROUPS):
            del user_q["group_by"]
        for uid in USERS:
            got = await get_data(client, "/api/log/self/performance", user_q, user_headers(uid))
            check(got, rows, user_q, uid)


# ---------------------------------------------------------------- properties


@HYPOTHESIS
@given(data=st.data(), case=scenario())
def test_performance_equals_brute_force(engine: Any, settings: Any, data: Any, case: Any) -> None:
    now, rows, instants = case
    queries = filters(data.draw, instants, data.draw(st.integers(1, 3)))
    for q in queries:
        group_by = data.draw(st.sampled_from([None, *ADMIN_GROUPS]))
        if group_by:
            q["group_by"] = group_by
    retried = data.draw(st.booleans())
    target = min(int(now), data.draw(instants))

    async def body(client: TestClient[Any, Any]) -> None:
        await post_rows(client, rows)
        if retried:  # the same body again: a gateway retrying after a lost answer
            await post_rows(client, rows)
        await check_all(client, rows, queries)
        # a history delete whose target is anywhere (often inside a minute of a day
        # holding rows): the rollup is corrected for exactly the rows removed
        response = await client.delete(
            "/api/log/", params={"target_timestamp": str(target)}, headers=ADMIN
        )
        assert response.status == 200, await response.text()
        await check_all(client, [r for r in rows if r["created_at"] >= target], queries)

    run(with_clock(engine, settings, now, body))


def test_frt_representative_is_within_the_bound_of_its_bucket() -> None:
    bound = (FRT_RATIO - 1) / (FRT_RATIO + 1)
    assert bound < FRT_TOLERANCE
    for k in (-300, -1, 0, 1, 57, 233, 480):
        lo, hi = FRT_RATIO**k, FRT_RATIO ** (k + 1)
        rep = frt_representative(k)
        for value in (lo, (lo + hi) / 2, hi * (1 - 1e-12)):
            assert abs(rep - value) <= bound * value * (1 + 1e-9)


async def test_whole_minutes_are_read_from_the_rollup(client: Any, store: Any) -> None:
    """A range of whole minutes reads no raw row: the rollup alone holds the answer, so
    once its rows are doubled by hand, the endpoint doubles (and stays consistent)."""
    base = 1_790_000_000 // 60 * 60
    rows = [
        log_row(created_at=base + i, use_time=i % 7, other=json.dumps({"frt": 100 + i}))
        for i in range(120)
    ]
    await post_rows(client, rows)
    q = {"start_timestamp": base, "end_timestamp": base + 119, "group_by": "model_name"}
    first = await get_data(client, "/api/log/performance", q, ADMIN)
    assert first["total"]["requests"] == 120
    await store.command(
        "INSERT INTO logs_perf_minute SETTINGS insert_deduplicate = 0 "
        "SELECT * FROM logs_perf_minute"
    )
    again = await get_data(client, "/api/log/performance", q, ADMIN)
    assert again["total"]["requests"] == 240
    assert again["total"]["use_time"] == first["total"]["use_time"]


async def test_bad_group_by_and_admin_only_groups(client: Any) -> None:
    for path, headers, value in [
        ("/api/log/performance", ADMIN, "nope"),
        ("/api/log/self/performance", user_headers(1), "username"),
        ("/api/log/self/performance", user_headers(1), "channel"),
    ]:
        response = await client.get(path, params={"group_by": value}, headers=headers)
        body = await response.json()
        assert response.status == 400 and body["success"] is False and body["data"] is None
        assert "group_by" in body["message"]
    response = await client.get("/api/log/performance", headers=user_headers(1))
    assert response.status == 403
    response = await client.get("/api/log/self/performance")
    assert response.status == 401
    response = await client.get("/api/log/performance", headers=WRITER)
    assert response.status == 403


async def test_nothing_counts_gives_nulls(client: Any) -> None:
    data = await get_data(client, "/api/log/performance", {}, ADMIN)
    assert data["total"] == {
        "requests": 0,
        "errors": 0,
        "error_rate": None,
        "use_time": {"p50": None, "p95": None, "p99": None},
        "frt_ms": {"p50": None, "p95": None, "p99": None},
    }
