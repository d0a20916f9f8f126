"""Assigned ids: at most 2^53 - 1 (exact in JavaScript), growing with time, unique across
generators sharing a clock and across processes leasing their node from the engine.

The expected layout is written out here (docs/ids.md), not imported from service.ids:
41 bits of milliseconds since 2024-01-01T00:00:00Z, 6 node bits, 6 sequence bits.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import EngineUnavailable
from service.ids import IdGenerator, NodeIds
from tests.conftest import ADMIN, ingest, log_row

JS_MAX_SAFE_INTEGER = 9007199254740991
EPOCH = 1704067200  # 2024-01-01T00:00:00Z


def parts(new_id: int) -> tuple[int, int, int]:
    return new_id >> 12, (new_id >> 6) & 63, new_id & 63


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_largest_id_is_javascripts_largest_safe_integer() -> None:
    last_ms = EPOCH + (2**41 - 1) / 1000
    generator = IdGenerator(63, clock=lambda: last_ms + 0.0005, floor_ms=2**41 - 2)
    ids = generator.next_ids(64)
    assert ids[-1] == JS_MAX_SAFE_INTEGER
    assert parts(ids[0]) == (2**41 - 1, 63, 0)
    with pytest.raises(EngineUnavailable, match="2093"):
        generator.next_ids(1)


def test_ids_start_from_the_2024_epoch() -> None:
    generator = IdGenerator(5, clock=lambda: EPOCH + 86400.25)
    (first,) = generator.next_ids(1)
    assert parts(first) == (86_400_250, 5, 0)
    # Today's ids are far below 2^53 and far above the gateway's own auto-increment ids.
    (today,) = IdGenerator(0).next_ids(1)
    assert 2**48 < today < JS_MAX_SAFE_INTEGER


def test_a_burst_takes_the_next_milliseconds_ahead_of_the_clock() -> None:
    generator = IdGenerator(2, clock=lambda: EPOCH + 10.0)
    ids = generator.next_ids(200)
    assert ids == sorted(set(ids))
    assert [parts(i)[0] for i in (ids[0], ids[63], ids[64], ids[199])] == [
        10_000,
        10_000,
        10_001,
        10_003,
    ]


def test_a_clock_step_back_keeps_ids_growing() -> None:
    clock = Clock(EPOCH + 100.0)
    generator = IdGenerator(3, clock=clock)
    first = generator.next_ids(2)
    clock.now -= 5
    second = generator.next_ids(2)
    assert first + second == sorted(set(first + second))


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 7), st.integers(1, 150), st.sampled_from([0.0, 0.0005, 0.003])),
        min_size=1,
        max_size=40,
    )
)
def test_generators_on_one_clock_never_collide(steps: list[tuple[int, int, float]]) -> None:
    clock = Clock(EPOCH + 1000.0)
    generators = [IdGenerator(node, clock=clock) for node in range(8)]
    seen: set[int] = set()
    made = 0
    per_node: dict[int, list[int]] = {}
    for node, count, advance in steps:
        ids = generators[node].next_ids(count)
        per_node.setdefault(node, []).extend(ids)
        seen.update(ids)
        made += count
        clock.now += advance
    assert len(seen) == made
    assert max(seen) <= JS_MAX_SAFE_INTEGER
    for node, ids in per_node.items():
        assert ids == sorted(ids)
        assert {parts(i)[1] for i in ids} == {node}


def test_a_node_outside_six_bits_is_refused() -> None:
    with pytest.raises(ValueError):
        IdGenerator(64)


async def test_processes_lease_different_nodes_and_never_collide(store: Any) -> None:
    holders = [NodeIds(lambda: store) for _ in range(5)]
    try:
        batches = await asyncio.gather(*(h.take(100) for h in holders))
        nodes = {h.node for h in holders}
        assert len(nodes) == 5
        # Low nodes first (attach-newapi takes the highest never-used one for good).
        assert max(n for n in nodes if n is not None) < 16
        every = [i for batch in batches for i in batch]
        assert len(set(every)) == 500 and max(every) <= JS_MAX_SAFE_INTEGER
    finally:
        for holder in holders:
            await holder.close()


async def test_a_crashed_holders_node_is_reused_after_expiry_above_its_ids(store: Any) -> None:
    clock = Clock(EPOCH + 10_000.0)
    first = NodeIds(lambda: store, clock, nodes=1, ttl=30, grace=30)
    ids_before = await first.take(10)
    first._task.cancel()  # crashed: no heartbeat, no release
    second = NodeIds(lambda: store, clock, nodes=1, ttl=30, grace=30)
    with pytest.raises(EngineUnavailable, match="all 1 id nodes are leased"):
        await second.take(1)
    clock.now += 61  # expiry (30 s) and grace (30 s) passed
    ids_after = await second.take(10)
    assert second.node == 0
    # The clock moved on a minute, but the first holder reserved a minute ahead: the new
    # holder starts past that reservation, not at the clock.
    assert min(ids_after) > max(ids_before)
    assert parts(min(ids_after))[0] > parts(max(ids_before))[0] + 60_000
    await second.close()


async def test_a_released_node_is_free_at_once_and_its_lapsed_lease_is_not_used(
    store: Any,
) -> None:
    clock = Clock(EPOCH + 20_000.0)
    first = NodeIds(lambda: store, clock, nodes=1)
    old = await first.take(3)
    await first.close()
    second = NodeIds(lambda: store, clock, nodes=1)
    new = await second.take(3)
    assert min(new) > max(old)
    # Without a heartbeat the lease lapses; the next take leases the node again.
    second._task.cancel()
    clock.now += 31
    again = await second.take(3)
    assert min(again) > max(new)
    await second.close()


class LateWrites:
    """The real store, whose writes land ``delay`` seconds after they are made (a slow
    replica's claim); ``writing`` is set as the first one is made."""

    def __init__(self, store: Any, delay: float) -> None:
        self.inner, self.delay = store, delay
        self.writing = asyncio.Event()

    async def query(self, *args: Any, **kwargs: Any) -> Any:
        return await self.inner.query(*args, **kwargs)

    async def insert(self, *args: Any, **kwargs: Any) -> None:
        self.writing.set()
        await asyncio.sleep(self.delay)
        await self.inner.insert(*args, **kwargs)


async def test_an_earlier_claim_that_lands_late_is_not_missed(store: Any) -> None:
    """The first claim of the node lands after the second was written and read back:
    reading the claims at once, each process found its own the earliest it could see,
    and both held the node. At most one may hold it."""
    clock = Clock(EPOCH + 40_000.0)
    slow = LateWrites(store, delay=0.3)
    early = NodeIds(lambda: slow, clock, nodes=1)
    late = NodeIds(lambda: store, clock, nodes=1)
    first = asyncio.ensure_future(early.take(1))
    await slow.writing.wait()  # the early claim is taken and on its way
    results = await asyncio.gather(first, late.take(1), return_exceptions=True)
    try:
        holders = [h for h in (early, late) if h.generator is not None]
        assert len(holders) <= 1, results
        for result, holder in zip(results, (early, late), strict=True):
            if holder.generator is None:
                assert isinstance(result, EngineUnavailable), result
    finally:
        await early.close()
        await late.close()


async def test_a_renewal_that_finds_a_rival_claim_steps_down(store: Any) -> None:
    clock = Clock(EPOCH + 30_000.0)
    holder = NodeIds(lambda: store, clock, nodes=1)
    await holder.take(1)
    assert holder.generator is not None
    # A rival's claim of the same node, made earlier (a race the first read missed).
    await store.insert(
        "id_leases",
        [[0, "rival", 1, int(clock.now) + 30, 0, 1]],
        ("node", "owner", "claimed", "expires_at", "reserved_until", "version"),
    )
    with pytest.raises(EngineUnavailable, match="another process"):
        await holder._renew(holder.generator)
    assert holder.generator is None
    await holder.close()


async def test_assigned_ids_through_the_api_are_safe_and_large_ids_still_work(
    client: Any,
) -> None:
    legacy = 915836044796338177  # an id an earlier build assigned (above 2^53)
    await ingest(client, [log_row(id=legacy, content="old")])
    await ingest(client, [log_row(content=f"new {i}") for i in range(3)])
    response = await client.get("/api/log/", headers=ADMIN, params={"page_size": 10})
    items = (await response.json())["data"]["items"]
    ids = {item["content"]: item["id"] for item in items}
    assert ids.pop("old") == legacy
    assert len(set(ids.values())) == 3
    assert all(0 < new_id <= JS_MAX_SAFE_INTEGER for new_id in ids.values())


def test_the_retired_node_id_setting_is_named_when_still_set() -> None:
    from service.settings import retired_settings

    (warning,) = retired_settings({"GATELOG_NODE_ID": "3", "GATELOG_PORT": "8080"})
    assert warning.startswith("GATELOG_NODE_ID is not read any more") and "docs/ids.md" in warning
    assert retired_settings({"GATELOG_NODE_ID": ""}) == []
