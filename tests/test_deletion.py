"""History deletion: the exact count, the rows left, whole days gone from both tables,
the rollup still exact (stats and series equal brute force afterwards), the parameter
rules, batching, and a delete running beside ingest."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.deletion import MONTHLY, TABLES, DeleteGuard, batches, partition_day
from service.keys import METRICS
from service.stats import ROLLUPS
from tests import brute_stats
from tests.conftest import ADMIN, WRITER, log_row, truncate_all, user_headers

DAY = 86400
BASE = 1_790_000_000 // DAY * DAY  # a midnight; rows spread over the 4 days before NOW
NOW = BASE + 3 * DAY + 7200 + 17.5
USERS = [1, 2]

HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_ids = itertools.count(1)


def row(created_at: int, **fields: Any) -> dict[str, Any]:
    return log_row(id=next(_ids), created_at=created_at, **fields)


async def app_client(store: Any, app_settings: Any, now: float = NOW) -> TestClient[Any, Any]:
    client = TestClient(TestServer(create_app(app_settings, store=store, clock=lambda: now)))
    await client.start_server()
    return client


async def post_rows(client: TestClient[Any, Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        assert response.status == 200, await response.text()


async def delete(client: TestClient[Any, Any], target: Any) -> tuple[int, dict[str, Any]]:
    response = await client.delete("/api/log/", params={"target_timestamp": str(target)},
                                   headers=ADMIN)  # fmt: skip
    return response.status, await response.json()


async def remaining_ids(store: Any) -> set[int]:
    return {r[0] for r in (await store.query("SELECT id FROM logs")).rows}


_DIMS = "user_id, type, username, token_name, model_name, channel_id, `group`"


async def assert_rollup_exact(store: Any) -> None:
    """Every (minute, dimensions) cell of the rollup equals the raw rows' sums."""
    raw = await store.query(
        f"SELECT toStartOfMinute(created_at) AS minute, {_DIMS}, count(), sum(quota), "
        "sum(prompt_tokens), sum(completion_tokens) FROM logs GROUP BY ALL ORDER BY ALL"
    )
    rollup = await store.query(
        f"SELECT minute, {_DIMS}, sum(requests) AS r, sum(quota) AS q, sum(prompt_tokens) AS p, "
        "sum(completion_tokens) AS c FROM logs_minute GROUP BY ALL "
        "HAVING r != 0 OR q != 0 OR p != 0 OR c != 0 ORDER BY ALL"
    )
    assert rollup.rows == raw.rows
    for level in ROLLUPS:  # and every other level: each (bucket, its dimensions) cell
        dims = ", ".join(level.columns)
        raw = await store.query(
            f"SELECT intDiv(toUInt32(created_at), {level.grain}) * {level.grain} AS b, {dims}, "
            "count(), sum(quota), sum(prompt_tokens), sum(completion_tokens) FROM logs "
            "GROUP BY ALL ORDER BY ALL"
        )
        rollup = await store.query(
            f"SELECT toUInt32({level.time}) AS b, {dims}, sum(requests) AS r, sum(quota) AS q, "
            f"sum(prompt_tokens) AS p, sum(completion_tokens) AS c FROM {level.table} "
            "GROUP BY ALL HAVING r != 0 OR q != 0 OR p != 0 OR c != 0 ORDER BY ALL"
        )
        assert rollup.rows == raw.rows, level.table


async def partition_days(store: Any, table: str) -> set[str]:
    rows = await store.query(
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
        "AND table = {t:String} AND active",
        {"t": table},
    )
    return {r[0] for r in rows.rows}


# --- property: any rows, any target ------------------------------------------------------

rows_strategy = st.lists(
    st.builds(
        lambda created_at, user_id, model, quota, p, c, t: row(
            created_at,
            user_id=user_id,
            model_name=model,
            quota=quota,
            prompt_tokens=p,
            completion_tokens=c,
            type=t,
        ),
        st.integers(BASE, BASE + 3 * DAY + 7000),
        st.sampled_from(USERS),
        st.sampled_from(["gpt-4", "claude"]),
        st.integers(0, 10**6),
        st.integers(0, 1000),
        st.integers(0, 1000),
        st.sampled_from([2, 2, 5]),
    ),
    max_size=40,
)


@st.composite
def target_strategy(draw: st.DrawFn, rows: list[dict[str, Any]]) -> int:
    day = draw(st.integers(0, 3))
    second = draw(
        st.one_of(
            st.sampled_from([0, 1, 60, 61, 59, DAY - 1]),  # midnight, minute edges
            st.integers(0, DAY - 1),
        )
    )
    target = BASE + day * DAY + second
    if rows and draw(st.booleans()):
        target = draw(st.sampled_from(rows))["created_at"] + draw(st.sampled_from([0, 1]))
    return min(target, int(NOW))


@HYPOTHESIS
@given(data=st.data(), rows=rows_strategy)
def test_delete_equals_brute_force(engine: Any, settings: Any, data: Any, rows: Any) -> None:
    target = data.draw(target_strategy(rows))
    stat_q = {"start_timestamp": BASE - 10, "end_timestamp": int(NOW)}
    series_q = {"start_timestamp": BASE, "interval": "hour", "group_by": "model_name"}

    async def body() -> None:
        await truncate_all(engine)
        client = await app_client(engine, settings)
        try:
            await post_rows(client, rows)
            status, answer = await delete(client, target)
            assert status == 200, answer
            gone = [r for r in rows if r["created_at"] < target]
            kept = [r for r in rows if r["created_at"] >= target]
            assert answer["data"] == len(gone)
            assert await remaining_ids(engine) == {r["id"] for r in kept}
            midnight = target - target % DAY
            for table in ("logs", "logs_minute"):
                days = await partition_days(engine, table)
                assert all(partition_day(p) is not None for p in days)
                assert not [p for p in days if p < f"{partition_day_id(midnight)}"], table
            await assert_rollup_exact(engine)
            # the admin page reads its keys through the time-ordered projection, which
            # the boundary day's delete dropped from the parts it touched
            response = await client.get("/api/log/", params={"page_size": "100"}, headers=ADMIN)
            page = (await response.json())["data"]
            newest = sorted(kept, key=lambda r: (r["created_at"], r["id"]), reverse=True)
            assert [i["id"] for i in page["items"]] == [r["id"] for r in newest]
            assert page["total"] == len(kept)
            response = await client.get("/api/log/stat", params=str_params(stat_q), headers=ADMIN)
            assert (await response.json())["data"] == brute_stats.stat(kept, stat_q, None, NOW)
            for uid in USERS:
                response = await client.get(
                    "/api/log/self/series", params=str_params(series_q), headers=user_headers(uid)
                )
                got = (await response.json())["data"]
                total, groups = brute_stats.series(kept, series_q, uid, NOW, "hour", "model_name")
                assert got["buckets"] == total
                assert {s["key"]: s["buckets"] for s in got["series"]} == groups
            # deleting again up to the same instant finds nothing
            status, answer = await delete(client, target)
            assert status == 200 and answer["data"] == 0
        finally:
            await client.close()

    asyncio.run(body())


def partition_day_id(ts: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d")


def str_params(q: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in q.items()}


# --- examples ------------------------------------------------------------------------------


async def test_delete_mid_day_mid_minute(store: Any, settings: Any) -> None:
    target = BASE + 2 * DAY + 3600 * 5 + 60 * 7 + 31  # day 2, 05:07:31
    rows = [row(BASE + d * DAY + s) for d in range(4) for s in (0, 100, 18451, 18480, 18482)]
    rows += [row(target - 1), row(target), row(target + 1)]
    client = await app_client(store, settings)
    try:
        await post_rows(client, rows)
        status, answer = await delete(client, target)
        assert status == 200
        assert answer == {"success": True, "message": "", "data": 2 * 5 + 2 + 1}
        registry = client.app[METRICS].registry
        assert registry.get_sample_value("gatelog_deleted_rows_total", {"source": "api"}) == 13
        assert await remaining_ids(store) == {r["id"] for r in rows if r["created_at"] >= target}
        # the two whole days are gone from both tables; the target's day is not
        expected = {partition_day_id(BASE + d * DAY) for d in (2, 3)}
        assert await partition_days(store, "logs") == expected
        assert await partition_days(store, "logs_minute") == expected
        await assert_rollup_exact(store)
    finally:
        await client.close()


async def test_delete_at_midnight_only_drops_partitions(store: Any, settings: Any) -> None:
    rows = [row(BASE + d * DAY + 5) for d in range(3)] + [row(BASE + 2 * DAY - 1)]
    client = await app_client(store, settings)
    try:
        await post_rows(client, rows)
        calls: list[str] = []
        store.observer = lambda kind, _seconds: calls.append(kind)
        try:
            status, answer = await delete(client, BASE + 2 * DAY)
        finally:
            store.observer = None
        assert status == 200 and answer["data"] == 3
        # one ALTER per table (logs and each of its rollups), no DELETE statement
        assert calls.count("command") == len(TABLES)
        await assert_rollup_exact(store)
    finally:
        await client.close()


async def test_whole_days_are_dropped_in_bounded_batches(store: Any, settings: Any) -> None:
    from dataclasses import replace

    rows = [row(BASE - d * DAY) for d in range(7)] + [row(BASE + 7)]  # 6 whole days before
    client = await app_client(store, replace(settings, delete_partitions_per_statement=3))
    try:
        await post_rows(client, rows)
        calls: list[str] = []
        store.observer = lambda kind, _seconds: calls.append(kind)
        try:
            status, answer = await delete(client, BASE + 1)
        finally:
            store.observer = None
        assert status == 200 and answer["data"] == 7
        # 6 old days: 2 ALTERs per table; the target's day: one correction per rollup
        # and the DELETE
        assert calls.count("command") == 2 * len(TABLES) + (len(TABLES) - 1) + 1
        assert await partition_days(store, "logs") == {partition_day_id(BASE)}
        await assert_rollup_exact(store)
    finally:
        await client.close()


def test_batches_are_bounded() -> None:
    ids = [f"2026010{i}" for i in range(1, 8)]
    assert batches(ids, 3) == [ids[:3], ids[3:6], ids[6:]]
    assert batches(ids, 0) == [[i] for i in ids]
    assert batches([], 3) == []


@pytest.mark.parametrize("target", ["", "0", "abc", "-5", "1.5", " ", "1e9", "000"])
async def test_target_required(client: Any, target: str) -> None:
    params = {"target_timestamp": target} if target else {}
    response = await client.delete("/api/log/", params=params, headers=ADMIN)
    body = await response.json()
    assert response.status == 400
    assert body == {"success": False, "message": "target timestamp is required", "data": None}


@pytest.mark.parametrize("ahead", ["hour", "9999999999", "99999999999", "1" + "0" * 30])
async def test_future_target_is_400(client: Any, ahead: str) -> None:
    await post_rows(client, [log_row()])
    import time

    target = str(int(time.time()) + 3600) if ahead == "hour" else ahead
    response = await client.delete("/api/log/", params={"target_timestamp": target}, headers=ADMIN)
    body = await response.json()
    assert response.status == 400
    assert body["message"] == "invalid parameter 'target_timestamp': must not be in the future"
    response = await client.get("/api/log/", headers=ADMIN)
    assert (await response.json())["data"]["total"] == 1


async def test_delete_is_admin_only(client: Any) -> None:
    response = await client.delete("/api/log/", params={"target_timestamp": "100"})
    assert response.status == 401
    response = await client.delete(
        "/api/log/", params={"target_timestamp": "100"}, headers=user_headers(3)
    )
    assert response.status == 403


async def test_delete_on_each_backend(client: Any, store: Any) -> None:
    import time

    now = int(time.time())
    rows = [log_row(created_at=now - d * DAY - 30) for d in range(4)]
    await post_rows(client, rows)
    status, answer = await delete(client, now - 20)
    assert status == 200 and answer["data"] == 4
    assert await remaining_ids(store) == set()
    await assert_rollup_exact(store)


# --- beside ingest -------------------------------------------------------------------------


async def test_delete_beside_ingest(store: Any, settings: Any) -> None:
    """Batches keep arriving while deletes run: newer rows (after the target) are never
    lost, late rows (older than the target) are either deleted and counted or kept, and
    the rollup equals the raw rows at the end."""
    target = BASE + 3 * DAY + 1800 + 29
    history = [row(BASE + d * 3607 % (3 * DAY + 3000), user_id=1 + d % 2) for d in range(600)]
    client = await app_client(store, settings)
    sent: list[dict[str, Any]] = []
    try:
        await post_rows(client, history)
        sent.extend(history)
        stop = asyncio.Event()

        async def ingest_loop(late: bool) -> None:
            n = 0
            while not stop.is_set() or n < 5:
                n += 1
                if late:  # a gateway catching up: rows from hours before the target
                    batch = [row(target - 7200 + n * 13 + i, user_id=2) for i in range(20)]
                else:  # live traffic, after the target
                    batch = [row(target + n * 7 + i % 5, user_id=1) for i in range(20)]
                await post_rows(client, batch)
                sent.extend(batch)
                await asyncio.sleep(0)

        writers = [asyncio.create_task(ingest_loop(late)) for late in (False, False, True)]
        await asyncio.sleep(0.05)
        deleted = 0
        for step in (2 * DAY, 0):  # first the older days, then up to the target
            status, answer = await delete(client, target - step)
            assert status == 200, answer
            deleted += answer["data"]
        stop.set()
        await asyncio.gather(*writers)
        left = await remaining_ids(store)
        newer = {r["id"] for r in sent if r["created_at"] >= target}
        assert newer <= left, "a log newer than the target was lost"
        older_sent = {r["id"] for r in sent if r["created_at"] < target}
        assert deleted == len(older_sent - left), "the count is not the rows deleted"
        assert left <= {r["id"] for r in sent}
        await assert_rollup_exact(store)
    finally:
        await client.close()


async def test_guard_holds_back_only_older_batches() -> None:
    guard = DeleteGuard()
    order: list[str] = []

    async def batch(name: str, oldest: int) -> None:
        async with guard.admit(oldest):
            order.append(name)

    async with guard.hold(1000):
        newer = asyncio.create_task(batch("newer", 1000))
        older = asyncio.create_task(batch("older", 999))
        await asyncio.sleep(0.01)
        assert order == ["newer"], "a batch at or after the target never waits"
        order.append("delete done")
    await asyncio.gather(newer, older)
    assert order == ["newer", "delete done", "older"]


async def test_guard_waits_for_older_batches_in_flight() -> None:
    guard = DeleteGuard()
    order: list[str] = []
    release = asyncio.Event()

    async def slow_batch() -> None:
        async with guard.admit(5):
            order.append("batch started")
            await release.wait()
            order.append("batch stored")

    async def deleter() -> None:
        async with guard.hold(10):
            order.append("delete")

    writer = asyncio.create_task(slow_batch())
    await asyncio.sleep(0.01)
    deleting = asyncio.create_task(deleter())
    await asyncio.sleep(0.01)
    assert order == ["batch started"]
    release.set()
    await asyncio.gather(writer, deleting)
    assert order == ["batch started", "batch stored", "delete"]


# --- cluster mode ----------------------------------------------------------------------------


def test_delete_and_retention_in_cluster_mode(tmp_path: Any) -> None:
    """On chDB configured as a one-shard cluster (its own process): drops and the DELETE
    address the local tables ON CLUSTER, the count is exact, the rollup read through its
    Distributed table still equals the raw rows, and retention drops the rest."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.support import emulated_cluster_delete as scenario

    done = subprocess.run(
        [sys.executable, "-m", "tests.support.emulated_cluster_delete", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    rows = scenario.rows()
    kept = [r for r in rows if r["created_at"] >= scenario.TARGET]
    assert out["deleted"] == len(rows) - len(kept)
    assert out["left"] == out["rollup"] == [len(kept), sum(r["quota"] for r in kept)]
    mine = [r for r in rows if r["user_id"] == 2 and r["created_at"] >= scenario.TARGET]
    assert out["stat"]["requests"] == len(mine)
    assert out["stat"]["quota"] == sum(r["quota"] for r in mine)
    statements = out["statements"]
    drops = [s for s in statements if s.startswith("ALTER TABLE")]
    inserts = [s for s in statements if s.lstrip().startswith("INSERT INTO")]
    # the partial day's corrections come from the raw rows; the whole days of the
    # month-partitioned levels are negated from their own rows (no partition to drop)
    corrections = [s for s in inserts if re.search(r"FROM logs\s+WHERE", s)]
    negations = [s for s in inserts if s not in corrections]
    assert len(drops) == len(TABLES) - len(MONTHLY) and len(corrections) == len(TABLES) - 1
    assert sorted(n.split()[2] for n in negations) == sorted(r.table for r in MONTHLY)
    delete = statements[-1]
    assert drops[0].startswith("ALTER TABLE logs_local ON CLUSTER `gatelog` DROP PARTITION")
    assert drops[1].startswith("ALTER TABLE logs_minute_local ON CLUSTER `gatelog` DROP")
    assert drops[2].startswith("ALTER TABLE logs_perf_minute_local ON CLUSTER `gatelog` DROP")
    # through Distributed: the user's shard
    assert "INSERT INTO logs_minute " in corrections[0]
    assert "INSERT INTO logs_perf_minute " in corrections[1]
    assert delete.startswith("DELETE FROM logs_local ON CLUSTER `gatelog` WHERE")
    assert out["perf_rollup"] == len(kept)
    day = partition_day_id(scenario.TARGET)
    assert out["partitions"] == [
        ["logs_local", day],
        ["logs_minute_local", day],
        ["logs_perf_minute_local", day],
    ]
    assert out["retention_dropped"] == [day] and out["after_retention"] == [0, 0]
