"""Rollups that check themselves (issue 15.3): ``rollup check`` finds a day whose rollup
differs from the raw rows and names it with the figures; ``rollup repair`` rebuilds it;
a delete checks and repairs the days it touched; a start repairs the days a process
left mid-delete (its marker still open). Differences are made here by writing to the
tables directly, as a crash or a bug would leave them."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from service.rollup import check, open_markers, repair, stored_days
from tests.conftest import ADMIN, SECRET, ingest, log_row

DAY = 86400
BASE = (1_780_000_000 // DAY) * DAY  # a midnight in the past (2026-05-29)
DAYS = [datetime.fromtimestamp(BASE + i * DAY, UTC).date() for i in range(3)]


def rows() -> list[dict[str, Any]]:
    """Distinct per call (the request ids), so no test's batch is a retry of another's."""
    salt = uuid.uuid4().hex[:8]
    out = []
    for i in range(3):
        for j in range(4):
            out.append(
                log_row(
                    created_at=BASE + i * DAY + 3600 * j + 7,
                    user_id=7 + j % 2,
                    quota=100 * (j + 1),
                    type=2 if j < 3 else 5,
                    other='{"frt": 250}',
                    request_id=f"{salt}-{i}-{j}",
                )
            )
    return out


async def corrupt(store: Any) -> None:
    """Day 1: a stray rollup cell (quota +5, one request) in logs_minute; day 2: raw rows
    deleted without touching any rollup."""
    await store.command(
        "INSERT INTO logs_minute (minute, user_id, type, username, token_name, model_name, "
        "channel_id, `group`, requests, quota, prompt_tokens, completion_tokens) VALUES "
        "(toDateTime({t:UInt32}, 'UTC'), 7, 2, 'bob', {token:String}, 'gpt-4', 1, 'default', "
        "1, 5, 0, 0)",
        {"t": BASE + DAY + 60, "token": uuid.uuid4().hex},  # never a duplicate block
        settings={"insert_deduplicate": 0},
    )
    await store.command(
        "DELETE FROM logs WHERE created_at >= toDateTime({lo:UInt32}, 'UTC') "
        "AND created_at < toDateTime({hi:UInt32}, 'UTC') AND user_id = 8",
        {"lo": BASE + 2 * DAY, "hi": BASE + 3 * DAY},
    )


async def brute_quota(store: Any) -> int:
    return int((await store.query("SELECT sum(quota) FROM logs WHERE type = 2")).scalar())


async def test_check_names_the_day_and_figures_and_repair_fixes_it(
    make_client: Any, store: Any
) -> None:
    client = await make_client()
    await ingest(client, rows())
    assert await stored_days(store) == DAYS
    assert await check(store, DAYS) == []
    await corrupt(store)
    found = await check(store, DAYS)
    by_day = {(d.day, d.table) for d in found}
    assert (DAYS[1], "logs_minute") in by_day and DAYS[0] not in {d.day for d in found}
    # day 2: every rollup, the latency one included, still counts the deleted rows
    assert {t for d, t in by_day if d == DAYS[2]} == {
        "logs_minute", "logs_perf_minute", "logs_hour_site", "logs_day_site_m", "logs_day_m",
    }  # fmt: skip
    minute = next(d for d in found if d.day == DAYS[1] and d.table == "logs_minute")
    assert (minute.rollup["quota"], minute.raw["quota"]) == (5, 0) and minute.cells == 1
    line = minute.line()
    assert DAYS[1].isoformat() in line and "quota rollup 5 raw 0" in line
    await repair(store, DAYS[1])
    assert {d.day for d in await check(store, DAYS)} == {DAYS[2]}
    await repair(store, DAYS[2])
    assert await check(store, DAYS) == []
    stat = await (await client.get("/api/log/stat", params={"type": "2"}, headers=ADMIN)).json()
    assert stat["data"]["quota"] == await brute_quota(store)
    assert await open_markers(store) == []


async def test_delete_checks_and_repairs_the_days_it_touched(make_client: Any, store: Any) -> None:
    client = await make_client()
    await ingest(client, rows())
    await corrupt(store)  # day 1 differs (the boundary day of the delete below)
    target = BASE + DAY + 2 * 3600  # mid day 1
    response = await client.delete(
        "/api/log/", params={"target_timestamp": str(target)}, headers=ADMIN
    )
    assert response.status == 200, await response.text()
    remaining = await stored_days(store)
    assert {d.day for d in await check(store, remaining)} == {DAYS[2]}  # untouched day
    assert await open_markers(store) == []


async def test_a_start_repairs_the_days_of_an_unfinished_delete(
    make_client: Any, store: Any
) -> None:
    from service.rollup import _write_marker

    client = await make_client()
    await ingest(client, rows())
    await corrupt(store)
    # a process died mid-delete over day 2: its marker is still open
    await _write_marker(store, "crashed", "delete", DAYS[2], DAYS[2], True)
    assert [m[0] for m in await open_markers(store)] == ["crashed"]
    await make_client()  # a start
    assert {d.day for d in await check(store, DAYS)} == {DAYS[1]}  # day 2 repaired
    assert await open_markers(store) == []


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "rollup", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_rollup_commands_exit_codes(make_client: Any, store: Any) -> None:
    from tests.support.chhttp import ClickHouseHTTPServer

    client = await make_client()
    await ingest(client, rows())
    server = ClickHouseHTTPServer(store.path)
    port = await server.start()
    env = {
        **os.environ,
        "GATELOG_CLICKHOUSE_URL": f"http://default:@127.0.0.1:{port}/{store.database}",
        "GATELOG_JWT_SECRET": SECRET,
    }
    try:
        await corrupt(store)
        code, out, _ = await cli(env, "check", "--days", "100000")
        assert code == 1
        assert f"{DAYS[1].isoformat()} logs_minute: 1 cells differ (requests rollup" in out
        assert "quota rollup 5 raw 0" in out and DAYS[0].isoformat() not in out
        code, out, err = await cli(env, "repair", "--day", "2026-02-30")
        assert code == 2 and "YYYY-MM-DD" in err and len(err.strip().splitlines()) == 1
        code, out, _ = await cli(env, "repair", "--day", DAYS[1].isoformat())
        assert code == 0 and DAYS[1].isoformat() in out
        code, out, _ = await cli(env, "check")
        assert code == 1 and DAYS[1].isoformat() not in out and DAYS[2].isoformat() in out
        assert {d.day for d in await check(store, DAYS)} == {DAYS[2]}
    finally:
        await server.stop()
        server.close()


async def test_a_repair_beside_ingest_into_the_same_day_leaves_it_exact(
    make_client: Any, store: Any
) -> None:
    """``rollup repair`` of a day while another service (the app, whose delete guard is
    not the repair's) keeps ingesting batches into that day: every batch is stored once,
    the day's rollups end equal to its raw rows, and no marker is left."""
    client = await make_client()
    await ingest(client, rows())
    await corrupt(store)  # day 1: a stray rollup cell, so the repair has work to do
    salt = uuid.uuid4().hex[:8]
    first = asyncio.Event()

    async def writer() -> int:
        stored = 0
        for k in range(12):
            batch = [log_row(created_at=BASE + DAY + 600 + 60 * k + j, quota=10 + j,
                             request_id=f"{salt}-{k}-{j}") for j in range(5)]  # fmt: skip
            await ingest(client, batch)
            stored += len(batch)
            first.set()
        return stored

    async def repairer() -> None:
        await first.wait()
        await repair(store, DAYS[1])

    stored, _ = await asyncio.gather(writer(), repairer())
    assert [d for d in await check(store, DAYS) if d.day == DAYS[1]] == []
    count = await store.query(
        "SELECT count() FROM logs WHERE startsWith(request_id, {s:String})", {"s": salt}
    )
    assert count.scalar() == stored == 60
    assert await open_markers(store) == []
