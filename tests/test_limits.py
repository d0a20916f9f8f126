"""Bounded queries and back-pressure (issue 15.1-2, 17.2-3).

The bounds are the engine's own (a query past them is cancelled by the engine, on both
backends); admission is tested with the app's real gate: a slot held by the test stands
for a long query, so every wait is an event, never a sleep, and nothing asserts a
duration.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.gate import CallerBusy, GatedStore, Lane
from service.keys import STORE
from service.settings import Settings
from service.store import ChdbStore, Store
from tests.conftest import ADMIN, WRITER, ingest, log_row, user_headers

BOUND = 60.0  # seconds: a generous bound on what must happen at all
Make = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make(backend: Store, settings: Settings) -> AsyncIterator[Make]:
    """Clients of apps with changed settings, over each backend."""
    clients: list[TestClient[Any, Any]] = []

    async def build(**changes: Any) -> TestClient[Any, Any]:
        client = TestClient(TestServer(create_app(replace(settings, **changes), store=backend)))
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


async def envelope_of(response: Any) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"success", "message", "data"}, body
    assert body["success"] is False and body["data"] is None
    return dict(body)


def gated(client: TestClient[Any, Any]) -> GatedStore:
    store = client.server.app[STORE]
    assert isinstance(store, GatedStore)
    return store


# --- bounded queries ------------------------------------------------------------------


async def test_a_query_past_the_timeout_is_cancelled_and_answered_503(make: Make) -> None:
    normal = await make()
    now = int(time.time())
    await ingest(normal, [log_row(created_at=now - 60 * i, content=f"row {i}") for i in range(50)])
    assert (await normal.get("/api/log/search?keyword=row", headers=ADMIN)).status == 200
    # A timeout no engine query can meet: every read is cut by the engine itself.
    tight = await make(query_timeout_seconds=1e-6)
    for path, headers in [
        ("/api/log/search?keyword=row", ADMIN),
        ("/api/log/?p=1", ADMIN),
        ("/api/log/self/stat", user_headers(7)),
        ("/api/log/self/export?format=ndjson", user_headers(7)),
    ]:
        response = await tight.get(path, headers=headers)
        body = await envelope_of(response)
        assert response.status == 503, (path, body)
        assert "GATELOG_QUERY_TIMEOUT_SECONDS" in body["message"]
        assert "time range" in body["message"], body  # says what to narrow
    # Writes are not reads: ingest is not cut by the query timeout.
    await ingest(tight, [log_row(created_at=now - 5)])


async def test_a_query_past_the_memory_limit_is_cancelled_and_answered_503(make: Make) -> None:
    normal = await make()
    now = int(time.time())
    await ingest(normal, [log_row(created_at=now - 60 * i, content="y" * 500) for i in range(50)])
    tight = await make(query_max_memory_bytes=1)  # no read of a table fits in one byte
    response = await tight.get("/api/log/search?keyword=yyy", headers=ADMIN)
    body = await envelope_of(response)
    assert response.status == 503, body
    assert "GATELOG_QUERY_MAX_MEMORY_BYTES" in body["message"]
    assert "narrow" in body["message"]
    assert (await normal.get("/api/log/search?keyword=yyy", headers=ADMIN)).status == 200


async def test_answers_are_bounded_in_bytes(make: Make) -> None:
    text_chars = 10_000
    cap = 50_000  # bytes: 2 rows of 10,000 characters fit, 20 do not
    client = await make(max_answer_bytes=cap)
    now = int(time.time())
    await ingest(client, [log_row(created_at=now - i, content="z" * text_chars) for i in range(20)])
    response = await client.get(
        "/api/log/self/search?keyword=zz&page_size=20", headers=user_headers(7)
    )
    body = await envelope_of(response)
    assert response.status == 400, body
    assert "page_size" in body["message"] and "GATELOG_MAX_ANSWER_BYTES" in body["message"]
    small = await client.get("/api/log/self/search?keyword=zz&page_size=2", headers=user_headers(7))
    assert small.status == 200
    items = (await small.json())["data"]
    assert [len(item["content"]) for item in items] == [text_chars, text_chars]


# --- admission: the lanes on their own ----------------------------------------------


async def test_a_lane_serves_in_order_and_skips_callers_at_their_share() -> None:
    lane = Lane("read", capacity=2, per_caller=1, wait_seconds=BOUND, max_queue=10)
    order: list[str] = []

    async def run(caller: str, tag: str, hold: asyncio.Event) -> None:
        async with lane.slot(caller):
            order.append(tag)
            await hold.wait()

    holds = {tag: asyncio.Event() for tag in "abcd"}
    a = asyncio.create_task(run("u1", "a", holds["a"]))
    b = asyncio.create_task(run("u1", "b", holds["b"]))  # u1 is at its share: waits
    c = asyncio.create_task(run("u2", "c", holds["c"]))  # another caller: runs beside a
    while len(order) < 2:
        await asyncio.sleep(0)
    assert order == ["a", "c"] and len(lane.waiters) == 1
    d = asyncio.create_task(run("u3", "d", holds["d"]))
    await asyncio.sleep(0)
    assert len(lane.waiters) == 2  # the engine is full: both wait, b first
    holds["c"].set()  # a slot comes free, u1 still at its share: d (behind b) gets it
    while "d" not in order:
        await asyncio.sleep(0)
    assert "b" not in order
    holds["a"].set()  # u1's own query ends: b runs
    while "b" not in order:
        await asyncio.sleep(0)
    holds["b"].set()
    holds["d"].set()
    await asyncio.gather(a, b, c, d)
    assert lane.held == 0 and not lane.waiters and not lane.by_caller


async def test_a_callers_share_shrinks_while_another_caller_uses_the_lane() -> None:
    """Alone, a caller may hold its full share (2); while another caller holds a slot,
    waits for one, or released one within the last second, only the contended share (1);
    a second after the other caller's last release, the full share again."""
    now = [100.0]
    lane = Lane("read", capacity=4, per_caller=2, wait_seconds=BOUND, max_queue=10,
                contended=1, recent_seconds=1.0, clock=lambda: now[0])  # fmt: skip
    await lane.acquire("heavy")
    await lane.acquire("heavy")  # alone: two at once
    assert lane.by_caller["heavy"] == 2
    lane.release("heavy")
    lane.release("heavy")
    await lane.acquire("light")  # another caller holds a slot
    assert lane.share("heavy") == 1
    await lane.acquire("heavy")
    third = asyncio.create_task(lane.acquire("heavy"))  # past the contended share: waits
    await asyncio.sleep(0)
    assert len(lane.waiters) == 1 and lane.held == 2  # though two slots are free
    lane.release("light")  # gone, but seen a moment ago: heavy still at one
    await asyncio.sleep(0)
    assert not third.done() and lane.share("heavy") == 1
    now[0] += 1.5  # a second and a half since light's last slot
    assert lane.share("heavy") == 2 and not lane.last_seen.get("light")
    lane.release("heavy")  # a release dispatches: the waiter gets its slot
    await asyncio.wait_for(third, BOUND)
    assert lane.by_caller["heavy"] == 1
    # a waiting caller counts as using the lane too
    lane.capacity = 1
    waiting = asyncio.create_task(lane.acquire("light"))
    await asyncio.sleep(0)
    assert lane.share("heavy") == 1 and lane.share("light") == 1
    lane.release("heavy")
    await asyncio.wait_for(waiting, BOUND)
    lane.release("light")
    assert lane.held == 0
    # 0 turns the contended share off
    plain = Lane("read", capacity=4, per_caller=2, wait_seconds=BOUND, max_queue=10)
    await plain.acquire("light")
    assert plain.share("heavy") == 2


async def test_a_lane_refuses_after_its_wait_and_when_its_queue_is_full() -> None:
    from service.gate import CallerBusy, Overloaded

    lane = Lane("read", capacity=1, per_caller=1, wait_seconds=0.05, max_queue=1)
    await lane.acquire("u1")
    with pytest.raises(Overloaded) as full:  # another caller, the engine full throughout
        await lane.acquire("u2")
    assert full.value.status == 503 and full.value.headers["Retry-After"] == "1"
    lane.capacity = 2  # room in the engine, but u1 is at its share
    with pytest.raises(CallerBusy) as own:
        await lane.acquire("u1")
    assert own.value.status == 429 and "Retry-After" in own.value.headers
    lane.capacity = 1
    waiting = asyncio.create_task(lane.acquire("u3"))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):  # one already waits: the queue is full at once
        await lane.acquire("u4")
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not lane.waiters
    lane.release("u1")
    assert lane.held == 0


# --- admission: through the service -----------------------------------------------------


async def metric(client: TestClient[Any, Any], name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and line.split("}")[0].split("{")[1] == wanted:
            return float(line.split()[-1])
    raise AssertionError(f"no {name}{{{wanted}}} in /metrics")


async def test_requests_beyond_the_engine_wait_then_get_503_with_retry_after(make: Make) -> None:
    client = await make(max_concurrent_queries=1, query_queue_timeout_seconds=0.2)
    lane = gated(client).gate.read
    await lane.acquire("test")  # a long query of someone else holds the only slot
    try:
        pending = asyncio.ensure_future(client.get("/api/log/?p=1", headers=ADMIN))
        for _ in range(10_000):  # until the request is seen waiting
            if await metric(client, "gatelog_engine_queue_depth", lane="read") == 1:
                break
            await asyncio.sleep(0.001)
        else:
            raise AssertionError("the request never queued")
        response = await asyncio.wait_for(pending, BOUND)
        body = await envelope_of(response)
        assert response.status == 503, body
        assert int(response.headers["Retry-After"]) >= 1
        labels = {"lane": "read", "reason": "queue_timeout"}
        assert await metric(client, "gatelog_engine_rejections_total", **labels) == 1
        # Ingest has its own lane: a write is stored while every read slot is taken.
        await ingest(client, [log_row(created_at=int(time.time()) - 5)])
    finally:
        lane.release("test")
    assert (await client.get("/api/log/?p=1", headers=ADMIN)).status == 200


async def test_one_user_at_their_share_waits_while_others_are_served(make: Make) -> None:
    client = await make(
        max_concurrent_queries=4, max_concurrent_queries_per_user=1, query_queue_timeout_seconds=0.2
    )
    lane = gated(client).gate.read
    await lane.acquire("user:5")  # user 5 already has a query running
    try:
        other = await client.get("/api/log/self", headers=user_headers(6))
        assert other.status == 200
        mine = await client.get("/api/log/self", headers=user_headers(5))
        body = await envelope_of(mine)
        assert mine.status == 429, body
        assert "Retry-After" in mine.headers
        labels = {"lane": "read", "reason": "caller_share"}
        assert await metric(client, "gatelog_engine_rejections_total", **labels) == 1
    finally:
        lane.release("user:5")
    assert (await client.get("/api/log/self", headers=user_headers(5))).status == 200


async def test_a_write_beyond_the_ingest_lane_is_refused_never_dropped(make: Make) -> None:
    client = await make(max_concurrent_ingests=1, ingest_queue_timeout_seconds=0.2)
    lane = gated(client).gate.write
    rows = [log_row(created_at=int(time.time()) - 7, request_id="refused-1")]
    await lane.acquire(None)
    try:
        response = await client.post("/api/internal/logs", json=rows, headers=WRITER)
        body = await envelope_of(response)
        assert response.status == 503 and "Retry-After" in response.headers, body
    finally:
        lane.release(None)
    store = gated(client).inner
    count = "SELECT count() FROM logs WHERE request_id = 'refused-1'"
    assert (await store.query(count)).scalar() == 0  # refused: nothing half-stored
    await ingest(client, rows)  # the retry is stored once
    assert (await store.query(count)).scalar() == 1


async def test_ingest_never_queues_behind_busy_engine_threads(
    store: ChdbStore, settings: Settings
) -> None:
    """Every read thread of the embedded engine is taken (as by long queries): an insert
    still completes, on the ingest lane's own threads."""
    app = create_app(
        replace(settings, max_concurrent_queries=2, readyz_cache_seconds=0), store=store
    )
    async with TestClient(TestServer(app)) as client:  # started: the schema is checked
        release = threading.Event()
        loop = asyncio.get_running_loop()
        workers = store._pool._max_workers  # noqa: SLF001 - the read lane's threads
        pool = store._pool  # noqa: SLF001
        busy = [loop.run_in_executor(pool, release.wait) for _ in range(workers)]
        try:
            rows = [log_row(created_at=int(time.time()) - 3)]
            response = await asyncio.wait_for(
                client.post("/api/internal/logs", json=rows, headers=WRITER), BOUND
            )
            assert response.status == 200, await response.text()
            # Readiness has its own thread and no slot: a busy service is still ready.
            for slot in range(2):
                await client.server.app[STORE].gate.read.acquire(f"test{slot}")
            ready = await asyncio.wait_for(client.get("/readyz"), BOUND)
            assert ready.status == 200, await ready.text()
            for slot in range(2):
                client.server.app[STORE].gate.read.release(f"test{slot}")
        finally:
            release.set()
            await asyncio.gather(*busy)


async def test_an_export_window_of_large_rows_is_not_held_whole(
    store: ChdbStore, settings: Settings
) -> None:
    """Within its byte budget a window is read whole before any of it is handed on (the
    engine released first); past the budget the rest is handed on as it comes, so the
    export holds about the budget, not the window."""
    from service.export import export_blocks
    from service.gate import Gate
    from service.logs import ADMIN_FIELDS
    from service.params import LogFilter

    async with TestClient(TestServer(create_app(settings, store=store))) as client:
        now = int(time.time())
        await ingest(client, [log_row(created_at=now - i, content="w" * 1000) for i in range(40)])
    gate = Gate(settings)
    gated_store = GatedStore(store, gate)

    async def held_at_first_block(budget: int) -> tuple[int, int]:
        blocks = export_blocks(gated_store, LogFilter(), ADMIN_FIELDS, False, 100_000, 5, budget)
        first = await anext(blocks)
        held = gate.read.held  # the window's engine call still open?
        rows = len(first) + sum([len(block) async for block in blocks])
        return held, rows

    assert await held_at_first_block(0) == (0, 40)  # no budget: read whole, then handed on
    assert await held_at_first_block(3_000) == (1, 40)  # past 3,000 characters: streamed
    assert gate.read.held == 0


async def export_of_large_rows(make: Make, spread: bool) -> tuple[list[Any], Any]:
    """Rows of user 7: 10 small ones, newest, then 10 of 60,000 CJK characters (about
    180 KB each) a day apart (one part each: the engine reads whole granules), or 30
    all in one second of one day (5.4 MB); exported with windows
    of 10 rows under a 1 MiB memory bound (the small window fits, a large one not)."""
    import json

    normal = await make()
    now = int(time.time())
    small = [log_row(created_at=now - i, content="small") for i in range(10)]
    large = [
        log_row(created_at=now - 2 * 86400 - (i * 86400 if spread else 0), content="大" * 60_000,
                request_id=f"large-{i}")
        for i in range(10 if spread else 30)  # 30 in one second: 5.4 MB, far past 1 MiB
    ]  # fmt: skip
    await ingest(normal, small)
    for lo in range(0, len(large), 2):
        await ingest(normal, large[lo : lo + 2])
    tight = await make(query_max_memory_bytes=1024 * 1024, export_window_rows=10)
    response = await tight.get("/api/log/self/export?format=ndjson", headers=user_headers(7))
    assert response.status == 200
    lines = [json.loads(line) for line in (await response.text()).splitlines()]
    return lines[:-1], lines[-1]


async def test_an_export_window_past_the_memory_bound_is_read_again_in_halves(
    make: Make,
) -> None:
    rows, last = await export_of_large_rows(make, spread=True)
    assert [row["content"][:5] for row in rows] == ["small"] * 10 + ["大" * 5] * 10
    times = [row["created_at"] for row in rows]
    assert times == sorted(times, reverse=True)  # newest first throughout
    assert last == {"totals": {"rows": 20, "quota": 20_000, "prompt_tokens": 1000,
                               "completion_tokens": 2000}}  # fmt: skip


async def test_an_export_past_the_memory_bound_mid_stream_ends_with_its_error_line(
    make: Make,
) -> None:
    rows, last = await export_of_large_rows(make, spread=False)  # no smaller window exists
    assert [row["content"] for row in rows] == ["small"] * 10
    assert "GATELOG_QUERY_MAX_MEMORY_BYTES" in last["error"]


async def test_python_work_on_rows_runs_inside_the_callers_share(
    store: ChdbStore, settings: Settings
) -> None:
    """An export's Python work on a window (shaping, encoding) takes a slot of the
    caller's share like its queries, so a heavy caller's exports and queries together
    hold its share; inside a stream of its own (a window past the memory budget, handed
    on while read) it runs in that stream's slot instead of waiting for a second one."""
    from service.gate import CALLER, Gate

    gate = Gate(replace(settings, max_concurrent_queries=4, max_concurrent_queries_per_user=1,
                        query_queue_timeout_seconds=0.3))  # fmt: skip
    gated_store = GatedStore(store, gate)
    token = CALLER.set("user:9")
    try:
        assert await gated_store.work(lambda n: (gate.read.by_caller["user:9"], n), 5) == (1, 5)
        assert gate.read.held == 0
        await gate.read.acquire("user:9")  # the caller at its share: its work waits, refused
        with pytest.raises(CallerBusy):
            await gated_store.work(lambda: None)
        gate.read.release("user:9")
        seen = []
        async for block in gated_store.stream("SELECT number FROM numbers(3)"):
            seen.append(await gated_store.work(lambda b: (gate.read.held, len(b)), block))
        assert seen == [(1, 3)] and gate.read.held == 0
    finally:
        CALLER.reset(token)
